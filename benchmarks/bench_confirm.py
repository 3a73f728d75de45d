"""The winner's curse and the practical number (issue 17) on bench_search's finished sweeps: per
sweep, the point export picks (knee) as the sweep reported it against its mean on fresh seeds;
the pick after `confirm` against fresh seeds it never saw; and per budget b the best forget
quality among points with model utility >= 0.9 x the target's, confirmed on fresh seeds.

    python benchmarks/bench_confirm.py --output DIR [--methods grad_diff,npo,simnpo]
        [--samplers tpe] [--sweep-seeds 0] [--budgets 9,18,27] [--fresh 3] [--top 3]
        [--json FILE]

Runs `confirm` (Ray trials of the sweep's trainable) inside each sweep folder; a rerun reuses the
seeds already in its confirmed.json. log10 forget quality is averaged as log10 (confirm's record).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from bench_search import GRID_SIZE, Sweep, candidates, load_rows, machine  # noqa: E402

FQ, MU = "log10_forget_quality", "model_utility"


def point_of(row: pd.Series, method: str) -> dict:
    return {"method": method, "trial": str(row["trial_id"]), "epoch": int(row["epoch"])}


def fresh(home: Path, p: dict, seeds: range | None = None) -> dict:
    """The record's log10 FQ of point p: mean and interval over its runs (or over `seeds`)."""
    from analysis import confirmed

    entry = next(
        e
        for e in confirmed.read(home)["methods"][p["method"]]["points"]
        if (e["trial"], e["epoch"]) == (p["trial"], p["epoch"])
    )
    runs = [r for r in entry["runs"] if "failure" not in r]
    if seeds is not None:
        runs = [r for r in runs if r["seed"] in seeds]
    s = confirmed.stats([r["objectives"][FQ] for r in runs], entry["sweep"]["objectives"][FQ])
    return s | {"seeds": [r["seed"] for r in runs]}


def practical(rows: pd.DataFrame, budget: int, target_mu: float, method: str) -> dict | None:
    """The best log10 FQ among the first `budget` trials' feasible rows keeping >= 0.9 x the
    target's utility."""
    c = candidates(rows, budget)
    c = c[c[MU] >= 0.9 * target_mu]
    if c.empty:
        return None
    return point_of(c.loc[c[FQ].idxmax()], method)


def knee(home: Path, method: str) -> dict:
    """What `unlearn-sweep export --rule knee` writes: its trial, epoch and confirmed info."""
    from unlearn_sweep.cli import main as cli

    with contextlib.redirect_stdout(sys.stderr):
        assert cli(["export", str(home), "--rule", "knee"]) == 0
    info = json.loads((home / "best" / f"{method}.json").read_text())["info"]
    return {"method": method, "trial": info["trial"], "epoch": info["epoch"], "info": info}


def bench_sweep(home: Path, method: str, seed: int, args: argparse.Namespace) -> dict:
    from analysis.confirmed import SEED_OFFSET
    from analysis.export import Rule, choose
    from analysis.load import open_experiment
    from sweeps.confirm import confirm

    rows = load_rows(home)
    target_mu = open_experiment(home).target[MU]
    keys, dirs = [FQ, MU], ["max", "max"]
    before = point_of(choose(rows, keys, dirs, Rule("knee"), target_mu), method)  # no record
    budgets = {str(b): practical(rows, b, target_mu, method) for b in args.budgets}
    wanted = [before] + [p for p in budgets.values() if p is not None]
    confirm(home, top=args.top, seeds=args.fresh)  # the top-K knee points: what a user runs
    confirm(home, points=wanted, seeds=args.fresh)
    after = knee(home, method)  # export, now with the confirmed means
    # the pick after confirm, on fresh seeds no step of the choice saw
    p_after = {k: after[k] for k in ("method", "trial", "epoch")}
    confirm(home, points=[p_after], seeds=2 * args.fresh)
    offset = seed + SEED_OFFSET  # confirm's fresh seeds: the sweep's seed + 1000 + j
    used = range(offset, offset + args.fresh)
    unseen = range(offset + args.fresh, offset + 2 * args.fresh)
    shown, check = fresh(home, p_after, used), fresh(home, p_after, unseen)
    inside = shown["low"] is not None and shown["low"] <= check["mean"] <= shown["high"]
    # every figure but the check is on the same `used` seeds: when the pick does not change,
    # `before` is p_after, whose record now also holds the unseen seeds' runs
    return {
        "before": before | {"fq": fresh(home, before, used)},
        "after": p_after | {"fq": shown, "check": check, "inside": inside},
        "practical": {
            b: None if p is None else p | {"fq": fresh(home, p, used)} for b, p in budgets.items()
        },
    }


def _ci(s: dict) -> str:
    if s["mean"] is None:
        return "no finite run"
    if s["low"] is None:
        return f"{s['mean']:.2f}"
    return f"{s['mean']:.2f} [{s['low']:.2f}, {s['high']:.2f}]"


def print_sweep(name: str, r: dict, args: argparse.Namespace) -> None:
    b, a = r["before"], r["after"]
    curse = b["fq"]["sweep"] - b["fq"]["mean"] if b["fq"]["mean"] is not None else math.nan
    print(f"\n{name}")
    print(
        f"  exported without confirm: trial {b['trial']} epoch {b['epoch']}: sweep log10 FQ "
        f"{b['fq']['sweep']:.2f}, fresh {_ci(b['fq'])}: winner's curse {curse:+.2f} (log10)"
    )
    verdict = "inside" if a["inside"] else "OUTSIDE"
    print(
        f"  exported after confirm: trial {a['trial']} epoch {a['epoch']}: sweep "
        f"{a['fq']['sweep']:.2f}, confirmed {_ci(a['fq'])}; {args.fresh} unseen seeds "
        f"{_ci(a['check'])}: {verdict} the printed interval"
    )
    for budget, p in r["practical"].items():
        if p is None:
            print(f"  budget {budget}: no point keeps 0.9 x the target's utility")
            continue
        print(
            f"  budget {budget}: best log10 FQ at MU >= 0.9 x target: trial {p['trial']} epoch "
            f"{p['epoch']}: sweep {p['fq']['sweep']:.2f}, fresh {_ci(p['fq'])}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", required=True, help="bench_search's folder of finished sweeps")
    ap.add_argument("--benchmark", default="tiny-tofu-small")
    ap.add_argument("--methods", default="grad_diff,npo,simnpo")
    ap.add_argument("--samplers", default="tpe")
    ap.add_argument("--sweep-seeds", default="0", help="the sweeps' seeds to confirm")
    ap.add_argument("--trials", type=int, default=GRID_SIZE, help="trials per sweep")
    ap.add_argument("--budgets", default="9,18,27")
    ap.add_argument("--fresh", type=int, default=3, help="fresh seeds per point")
    ap.add_argument("--top", type=int, default=3, help="confirm's --top")
    ap.add_argument("--max-concurrent", type=int, default=2, help="as bench_search ran them")
    ap.add_argument("--json", help="write every figure to this file")
    args = ap.parse_args(argv)
    args.budgets = [int(b) for b in args.budgets.split(",")]
    root = Path(args.output).expanduser().absolute()
    out = {}
    for method in args.methods.split(","):
        for sampler in args.samplers.split(","):
            for seed in map(int, args.sweep_seeds.split(",")):
                shape = (args.trials, None, 0.0, args.max_concurrent)
                sweep = Sweep(args.benchmark, method, sampler, seed, *shape)
                home = root / sweep.name
                if not (home / "unlearn_sweep.json").is_file():
                    raise SystemExit(f"no finished sweep {home}; run bench_search first")
                out[sweep.name] = bench_sweep(home, method, seed, args)
                print_sweep(sweep.name, out[sweep.name], args)
    if args.json:
        doc = {"settings": vars(args), "machine": machine(), "sweeps": out}
        Path(args.json).write_text(json.dumps(doc, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
