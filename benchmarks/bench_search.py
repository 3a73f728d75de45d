"""Samplers at equal budgets (issue 7): the classic 27-point grid (one run) against random, TPE and
GP (one sweep per seed) on a built-in benchmark; hypervolume of the first b trials, the trials each
needs to reach the grid's hypervolume, and whether the front beats the method's reference defaults.

    python benchmarks/bench_search.py [--methods grad_diff,npo,simnpo] [--seeds 3]
        [--budgets 9,18,27] [--trials-max 27] [--epochs-fixed E] [--output DIR | --reuse DIR]
        [--json FILE]

Every reported epoch row of a trial is a candidate point (each is what `export` can pick), for every
sampler alike. Sweeps run with --utility-floor 0 (no trial cut short) and are kept under --output:
a folder that already holds the same finished sweep is reused, an unfinished one is resumed;
--reuse DIR analyses finished sweeps only. With the same seed, TPE and GP start with the same 10
random trials (Optuna's n_startup_trials) as each other, and usually as random: see the output.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SAMPLERS = ("random", "tpe", "gp")  # one sweep per seed each (--samplers); the grid runs once
GRID_SIZE = 27  # sweeps/search.py: 3 lr x 3 coefficient x 3 epochs


@dataclass(frozen=True)
class Sweep:
    """One sweep a bench needs; its folder name holds every field, so bench_search and bench_floor
    share the sweeps they have in common."""

    benchmark: str
    method: str
    sampler: str
    seed: int
    trials: int
    epochs_fixed: int | None
    floor: float
    max_concurrent: int
    patience: int = 1  # --floor-patience: evaluations below the floor before a stop

    @property
    def name(self) -> str:
        fixed = f"-e{self.epochs_fixed}" if self.epochs_fixed else ""
        s = self
        patience = f"-p{s.patience}" if s.patience > 1 else ""
        return (
            f"{s.benchmark}-{s.method}-{s.sampler}-s{s.seed}-t{s.trials}{fixed}-f{s.floor:g}"
            f"{patience}"
        )

    def argv(self, root: Path) -> list[str]:
        s = self
        flags = (
            f"--method {s.method} --benchmark {s.benchmark} --split forget10 --trials {s.trials} "
            f"--sampler {s.sampler} --seed {s.seed} --utility-floor {s.floor:g} "
            f"--max-concurrent {s.max_concurrent} --name {s.name}"
        )
        fixed = ["--fix", f"epochs={s.epochs_fixed}"] if s.epochs_fixed else []
        patience = ["--floor-patience", str(s.patience)] if s.patience > 1 else []
        return ["sweep", *flags.split(), "--output", str(root), *fixed, *patience]

    def manifest_fields(self) -> dict:
        """What the experiment's manifest must hold for the folder to be this sweep."""
        fixed = {"epochs": self.epochs_fixed} if self.epochs_fixed else {}
        return {
            "method": self.method,
            "benchmark": self.benchmark,
            "split": "forget10",
            "trials": self.trials,
            "sampler": self.sampler,
            "seed": self.seed,
            "fixed": fixed,
            "utility_floor": self.floor,
            "max_concurrent": self.max_concurrent,
            # older folders predate the field; patience 1 was the only behaviour then
            **({"floor_patience": self.patience} if self.patience > 1 else {}),
        }


def run_sweep(sweep: Sweep, root: Path, reuse_only: bool = False) -> Path:
    """Run one sweep in this process (Ray starts once), or reuse / resume its folder (reuse_only:
    never run). The sweep's wall time is saved next to it (bench_run.json) when run here whole."""
    from sweeps.experiment import manifest_path
    from unlearn_sweep.cli import main as cli

    home = root / sweep.name
    argv = sweep.argv(root)
    if manifest_path(home).is_file():
        saved = json.loads(manifest_path(home).read_text())["sweeps"][0]
        saved |= saved.get("source", {})  # the benchmark and split live in the sweep's source
        want = sweep.manifest_fields()
        if {k: saved.get(k) for k in want} != want:
            raise SystemExit(f"{home} holds another sweep; expected {want}")
        if _finished(home, sweep.method) >= sweep.trials:
            return home
        if reuse_only:
            raise SystemExit(f"{home} is unfinished; resume it without --reuse")
        argv = ["resume", str(home)]
    elif reuse_only:
        raise SystemExit(f"--reuse: no sweep {home}")
    print(f"running: unlearn-sweep {' '.join(argv)}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):  # stdout holds only the bench's tables
        code = cli(argv)
    if code:
        raise SystemExit(f"sweep {sweep.name} failed with exit code {code}")
    if argv[0] == "sweep":
        run = {"wall_s": time.perf_counter() - start, "argv": argv}
        (home / "bench_run.json").write_text(json.dumps(run))
    return home


def _finished(home: Path, method: str) -> int:
    from analysis.load import load_study
    from sweeps.experiment import is_epoch_point

    study = load_study(home, method)
    trials = [] if study is None else [t for t in study.trials if not is_epoch_point(t)]
    return sum(t.state.is_finished() for t in trials)


def load_rows(home: Path) -> pd.DataFrame:
    """Every row of the sweep (analysis.load): trial_index is 1-based Optuna trial order."""
    from analysis.load import load

    df, _ = load([home])
    return df


def hv_curve(df: pd.DataFrame, trials: int) -> list[float]:
    """Hypervolume of the feasible epoch rows of the first k trials, k = 1..trials."""
    from analysis.pareto import hypervolume_curve

    curve = hypervolume_curve(df)["hypervolume"].tolist()
    return [curve[min(k, len(curve)) - 1] if curve else 0.0 for k in range(1, trials + 1)]


def trials_to_reach(curve: list[float], target: float) -> int | None:
    """First k whose hypervolume is at least `target` (relative 1e-9 for float noise)."""
    return next((k for k, hv in enumerate(curve, 1) if hv >= target * (1 - 1e-9)), None)


def last_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Each trial's last reported epoch row (the configuration it was asked to run)."""
    ok = df[df["epoch"].notna()]
    return ok.sort_values("epoch").groupby("trial_index").tail(1).sort_values("trial_index")


def trial_params(df: pd.DataFrame) -> list[dict]:
    """Each trial's sampled parameters in Optuna trial order (failed trials included)."""
    return [dict(g["params"].iloc[0]) for _, g in df.groupby("trial_index")]


def same_prefix(a: list[dict], b: list[dict]) -> int:
    """How many leading trials sampled the same parameters in two sweeps."""
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def candidates(df: pd.DataFrame, trials: int) -> pd.DataFrame:
    """The feasible epoch rows of the first `trials` trials: the points a user can export."""
    return df[(df["status"] == "complete") & (df["trial_index"] <= trials)]


def default_row(df: pd.DataFrame, expected: dict) -> dict:
    """Trial 0's final row: the method's reference defaults, which every non-grid sweep
    evaluates first (`is_defaults` checks its parameters against sweeps.launch's)."""
    last = last_rows(df)
    d = last[last["trial_index"] == 1].iloc[0]
    same = all(math.isclose(float(d["params"][k]), float(v)) for k, v in expected.items())
    return {
        "log10_fq": float(d["log10_forget_quality"]),
        "mu": float(d["model_utility"]),
        "params": d["params"],
        "is_defaults": same,
    }


def beats(rows: pd.DataFrame, d: dict) -> dict:
    """Rows strictly better than the defaults `d` in both objectives, and the one furthest
    beyond them in its worse objective (utility scaled x20 to log10 FQ's range)."""
    fq, mu = rows["log10_forget_quality"], rows["model_utility"]
    better = rows[(fq > d["log10_fq"]) & (mu > d["mu"])]
    if not len(better):
        return {"n_better": 0, "example": None}
    gain = np.minimum(
        better["log10_forget_quality"] - d["log10_fq"], (better["model_utility"] - d["mu"]) * 20
    )
    b = better.loc[gain.idxmax()]
    return {
        "n_better": int(len(better)),
        "example": {
            "trial": int(b["trial_index"]) - 1,
            "epoch": int(b["epoch"]),
            "log10_fq": float(b["log10_forget_quality"]),
            "mu": float(b["model_utility"]),
        },
    }


def expected_defaults(args: argparse.Namespace, method: str) -> dict:
    from sweeps.config import SweepConfig
    from sweeps.launch import defaults_point
    from unlearn_core.source import Source

    fixed = {"epochs": args.epochs_fixed} if args.epochs_fixed else {}
    return defaults_point(SweepConfig(method=method, source=Source(args.benchmark), fixed=fixed))


def summarise(home: Path, trials: int, budgets: list[int]) -> dict:
    df = load_rows(home)
    curve = hv_curve(df, trials)
    last = last_rows(df[df["trial_index"] <= trials])
    run = home / "bench_run.json"
    return {
        "folder": str(home),
        "curve": curve,
        "hv": {str(b): curve[b - 1] for b in budgets},
        "optimizer_steps": float(last["run_optimizer_steps"].sum()),
        "wall_s": json.loads(run.read_text())["wall_s"] if run.is_file() else None,
        "order": trial_params(df)[:trials],
    }


def mean_std(xs: list[float]) -> tuple[float, float]:
    return float(np.mean(xs)), float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0


def reach_summary(reach: list[int | None], trials: int) -> dict:
    """Mean over seeds of the trials needed; a seed that never reaches is censored at trials+1,
    so the mean is then a lower bound and the sampler counts as not reaching on average."""
    hit = [r for r in reach if r is not None]
    censored = [r if r is not None else trials + 1 for r in reach]
    return {
        "per_seed": reach,
        "reached": len(hit),
        "of": len(reach),
        "mean": float(np.mean(censored)) if reach else math.nan,
        "all_reached": len(hit) == len(reach),
    }


def method_sweeps(args: argparse.Namespace, method: str) -> tuple[Sweep, dict[str, list[Sweep]]]:
    """The method's grid sweep, and its sweeps per sampler, one per seed."""

    def sweep(sampler: str, seed: int, trials: int) -> Sweep:
        return Sweep(
            args.benchmark,
            method,
            sampler,
            seed,
            trials,
            args.epochs_fixed,
            0.0,
            args.max_concurrent,
        )

    grid = sweep("grid", args.seeds[0], GRID_SIZE)  # the whole grid, whatever --trials-max
    return grid, {
        s: [sweep(s, seed, args.trials_max) for seed in args.seeds] for s in args.samplers
    }


def run_all(args: argparse.Namespace, root: Path) -> None:
    """Every sweep, seed by seed (the grid once, first), so a cut-short run leaves whole seeds."""
    for i in range(len(args.seeds)):
        for method in args.methods:
            grid, others = method_sweeps(args, method)
            for sweep in ([grid] if i == 0 else []) + [v[i] for v in others.values()]:
                run_sweep(sweep, root, reuse_only=bool(args.reuse))


def bench_method(args: argparse.Namespace, method: str, root: Path) -> dict:
    """The method's figures from its finished sweeps (run_all ran them)."""
    grid_sweep, others = method_sweeps(args, method)
    n = grid_sweep.trials
    grid = summarise(
        run_sweep(grid_sweep, root, reuse_only=True), n, [b for b in args.budgets if b <= n]
    )
    target = grid["curve"][-1]
    out = {"grid": grid, "grid_hv": target, "samplers": {}}
    expected, pooled = expected_defaults(args, method), []
    for sampler in args.samplers:
        per_seed = {}
        for seed, sweep in zip(args.seeds, others[sampler], strict=True):
            home = run_sweep(sweep, root, reuse_only=True)
            s = summarise(home, args.trials_max, args.budgets)
            s["reach"] = trials_to_reach(s["curve"], target)
            df = load_rows(home)
            rows = candidates(df, args.trials_max)
            s["default"] = default_row(df, expected)
            s["beats_default"] = beats(rows, s["default"])
            pooled.append(rows)
            per_seed[str(seed)] = s
        hv = {str(b): mean_std([s["hv"][str(b)] for s in per_seed.values()]) for b in args.budgets}
        reach = reach_summary([s["reach"] for s in per_seed.values()], args.trials_max)
        out["samplers"][sampler] = {"per_seed": per_seed, "hv": hv, "reach": reach}
    # TPE's and GP's start-up trials come from a RandomSampler(seed): which trials are shared?
    orders = {s: [x["order"] for x in r["per_seed"].values()] for s, r in out["samplers"].items()}
    out["identical_leading_trials"] = {
        f"{a}/{b}": [same_prefix(x, y) for x, y in zip(orders[a], orders[b], strict=True)]
        for a, b in (("random", "tpe"), ("random", "gp"), ("tpe", "gp"))
        if a in orders and b in orders
    }
    # the method's front over all its sweeps, against each sweep's defaults
    pooled = pd.concat(pooled, ignore_index=True)
    for r in out["samplers"].values():
        for s in r["per_seed"].values():
            s["pooled_beats_default"] = beats(pooled, s["default"])["n_better"] > 0
    out["targets"] = targets(out, args)
    return out


def targets(res: dict, args: argparse.Namespace) -> dict:
    fast = {s: res["samplers"][s]["reach"] for s in ("tpe", "gp") if s in res["samplers"]}
    ok = [s for s, r in fast.items() if r["all_reached"] and r["mean"] <= args.target_trials]
    why = "; ".join(f"{s}: {_reach_text(r)}" for s, r in fast.items())
    sweeps = [s for smp in args.samplers for s in res["samplers"][smp]["per_seed"].values()]
    beaten = sum(s["beats_default"]["n_better"] > 0 for s in sweeps)
    pooled = sum(s["pooled_beats_default"] for s in sweeps)
    return {
        "reach": {"met": bool(ok), "why": why, "by": ok},
        "defaults": {
            "met": beaten == len(sweeps),
            "beaten": beaten,
            "of": len(sweeps),
            "pooled_met": pooled == len(sweeps),
            "pooled_beaten": pooled,
            "all_trial0_defaults": all(s["default"]["is_defaults"] for s in sweeps),
        },
    }


def _reach_text(r: dict) -> str:
    if r["reached"] == 0:
        return "not reached"
    if r["all_reached"]:
        return f"{r['mean']:.1f}"
    return f"reached {r['reached']}/{r['of']}, >= {r['mean']:.1f}"


def _fmt(m: float, s: float, n: int) -> str:
    return f"{m:.3f} ± {s:.3f}" if n > 1 else f"{m:.3f}"


def print_method(method: str, res: dict, args: argparse.Namespace) -> None:
    n, g = len(args.seeds), res["grid"]
    grid_n = len(g["curve"])
    print(
        f"\n{method}: hypervolume (log10 FQ clipped at -20, MU; ref (-20, 0)) of every epoch "
        f"row of the first b trials; mean ± std over {n} seed(s)"
    )
    head = "".join(f"{'HV@' + str(b):>18s}" for b in args.budgets)
    print(f"  {'sampler':8s}{head}  {'trials to grid HV@' + str(grid_n):>26s}  {'steps':>7s}")
    cells = "".join(f"{g['hv'].get(str(b), math.nan):18.3f}" for b in args.budgets)
    own = f"({res['grid_hv']:.3f})"
    print(f"  {'grid':8s}{cells}  {own:>26s}  {g['optimizer_steps']:7.0f}")
    for s, r in res["samplers"].items():
        cells = "".join(f"{_fmt(*r['hv'][str(b)], n):>18s}" for b in args.budgets)
        steps = np.mean([x["optimizer_steps"] for x in r["per_seed"].values()])
        print(f"  {s:8s}{cells}  {_reach_text(r['reach']):>26s}  {steps:7.0f}")
    print_targets(res, args, grid_n)
    same = "; ".join(f"{k} {v}" for k, v in res["identical_leading_trials"].items())
    print(f"  leading trials with identical parameters, per seed: {same}")
    order = ", ".join(_grid_point(p, method) for p in g["order"][:9])
    print(
        f"  grid order (Optuna GridSampler, shuffled by seed {args.seeds[0]}): {order}"
        + (", ..." if grid_n > 9 else "")
    )


def print_targets(res: dict, args: argparse.Namespace, grid_n: int) -> None:
    t, d = res["targets"]["reach"], res["targets"]["defaults"]
    print(
        f"  target: TPE or GP reaches the grid's {grid_n}-trial hypervolume in <= "
        f"{args.target_trials} trials on average: {_verdict(t['met'])} ({t['why']})"
    )
    print(
        f"  target: the front holds a point strictly better than the reference defaults in "
        f"both objectives: {_verdict(d['met'])} (each sweep's own front: {d['beaten']}/"
        f"{d['of']} sweeps; the method's front over all sweeps: {d['pooled_beaten']}/{d['of']})"
    )
    if not d["all_trial0_defaults"]:
        print("  WARNING: a sweep's trial 0 did not run the reference defaults")
    for s, r in res["samplers"].items():
        for seed, x in r["per_seed"].items():
            dd, ex = x["default"], x["beats_default"]["example"]
            beat = (
                f"trial {ex['trial']} epoch {ex['epoch']}: {ex['log10_fq']:.2f}, {ex['mu']:.3f}"
                if ex
                else "none"
            )
            print(
                f"    {s} seed {seed}: defaults {dd['log10_fq']:.2f}, {dd['mu']:.3f} -> "
                f"{x['beats_default']['n_better']} rows better, e.g. {beat}"
            )


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def _grid_point(p: dict, method: str) -> str:
    from sweeps.search import GRID_COEF

    coef = GRID_COEF[method][0] if method in GRID_COEF else None
    return f"(lr {p['lr']:g}, {coef} {p.get(coef, math.nan):g}, ep {p['epochs']})"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark", default="tiny-tofu-small", help="tiny-tofu-small | tiny-tofu")
    ap.add_argument("--methods", default="grad_diff,npo,simnpo")
    ap.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per sampler")
    ap.add_argument("--budgets", default="9,18,27")
    ap.add_argument("--trials-max", type=int, default=27, help="trials per sweep")
    ap.add_argument("--epochs-fixed", type=int, help="fix epochs instead of searching them")
    ap.add_argument(
        "--samplers", default=",".join(SAMPLERS), help="comma-separated, of " + ", ".join(SAMPLERS)
    )
    ap.add_argument("--target-trials", type=int, default=9)
    ap.add_argument("--max-concurrent", type=int, default=2)
    add_output_args(ap)
    args = ap.parse_args(argv)
    args.methods = args.methods.split(",")
    args.samplers = args.samplers.split(",")
    if not set(args.samplers) <= set(SAMPLERS):
        ap.error(f"--samplers: choose among {', '.join(SAMPLERS)}")
    args.budgets = [int(b) for b in args.budgets.split(",")]
    args.seeds = list(range(args.seeds))
    if not args.seeds or min(args.budgets) < 1 or max(args.budgets) > args.trials_max:
        ap.error("need --seeds >= 1 and budgets in 1..--trials-max")
    return args


def add_output_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--output",
        default="experiments/bench",
        help="folder for the sweeps (finished ones are reused, unfinished resumed)",
    )
    ap.add_argument("--reuse", metavar="DIR", help="analyse the sweeps in DIR; run none")
    ap.add_argument("--json", help="write every figure to this file")


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(args.reuse or args.output).expanduser().absolute()
    run_all(args, root)
    results = {}
    for method in args.methods:
        results[method] = bench_method(args, method, root)
    print(
        f"\n{args.benchmark} forget10, samplers grid/{'/'.join(args.samplers)}, "
        f"budgets {args.budgets}, "
        f"seeds {args.seeds}, epochs {args.epochs_fixed or 'searched'}, utility floor off"
    )
    for method, res in results.items():
        print_method(method, res, args)
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k != "json"}
        Path(args.json).write_text(
            json.dumps({"settings": settings, "machine": machine(), "methods": results}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
