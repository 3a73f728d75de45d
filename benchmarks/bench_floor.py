"""The utility floor on and off (issue 7): one sweep (same sampler, seed and trials) run with
--utility-floor F and with 0; optimizer steps, wall time and hypervolume of each. Target: the floor
saves >= 30% of the optimizer steps and loses at most 2% of the hypervolume.

    python benchmarks/bench_floor.py [--method npo] [--trials 12] [--seed 0] [--floor 0.5]
        [--sampler tpe] [--patience 2] [--epochs-fixed E] [--output DIR | --reuse DIR]
        [--json FILE]

Steps are summed over trials from each trial's last reported row. With the floor on, TPE and GP are
told the stopped trials as infeasible, so after the random start-up trials the two sweeps may
sample different configurations: the script says how many trials ran identical parameters.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
from bench_search import (
    Sweep,
    add_output_args,
    last_rows,
    load_rows,
    machine,
    run_sweep,
    same_prefix,
    trial_params,
)

TARGET_SAVED = 0.30  # fraction of optimizer steps the floor must save
TARGET_HV_LOSS = 0.02  # largest relative hypervolume loss allowed


def trial_phase_s(home: Path) -> float:
    """From the first trial's start to the last result (Ray's timestamps, 1 s resolution)."""
    rows = [
        json.loads(line)
        for path in (home / "results").glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    runs = [r["run"] for r in rows if r.get("event") == "result" and "wall_time_s" in r["run"]]
    return max(r["timestamp"] for r in runs) - min(r["timestamp"] - r["wall_time_s"] for r in runs)


def hv(df: pd.DataFrame, min_utility: float = 0.0) -> float:
    """Hypervolume (analysis.pareto) of the feasible rows with model_utility >= min_utility."""
    from analysis.pareto import fq_mu_hypervolume

    ok = df[(df["status"] == "complete") & (df["model_utility"] >= min_utility)]
    return fq_mu_hypervolume(ok["log10_forget_quality"].to_numpy(), ok["model_utility"].to_numpy())


def summarise(home: Path, floor_utility: float) -> dict:
    df = load_rows(home)
    last = last_rows(df)
    run = home / "bench_run.json"
    return {
        "folder": str(home),
        "trials": int(df["trial_index"].max()),
        "stopped": int((last["trial_status"] == "stopped").sum()),
        "failed": int(
            df.loc[df["trial_status"].isin(("failed", "diverged")), "trial_index"].nunique()
        ),
        "epochs_run": int(last["epoch"].sum()),
        "optimizer_steps": float(last["run_optimizer_steps"].sum()),
        "wall_s": json.loads(run.read_text())["wall_s"] if run.is_file() else None,
        "trial_phase_s": trial_phase_s(home),
        "hv": hv(df),
        "hv_above_floor": hv(df, floor_utility),
        "params": trial_params(df),
    }


def read_target_utility(home: Path) -> float:
    path = next((home / "reference").glob("target-*.json"))
    return float(json.loads(path.read_text())["model_utility"])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark", default="tiny-tofu-small", help="tiny-tofu-small | tiny-tofu")
    ap.add_argument("--method", default="npo")
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sampler", default="tpe")
    ap.add_argument("--floor", type=float, default=0.5, help="the --utility-floor compared to 0")
    ap.add_argument(
        "--patience",
        type=int,
        default=2,
        help="--floor-patience: evaluations in a row below the floor before a stop",
    )
    ap.add_argument("--epochs-fixed", type=int, help="fix epochs instead of searching them")
    ap.add_argument("--max-concurrent", type=int, default=2)
    add_output_args(ap)
    args = ap.parse_args(argv)
    if not 0 < args.floor < 1:
        ap.error("--floor is a fraction of the target's utility in (0, 1)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = Path(args.reuse or args.output).expanduser().absolute()
    a = args
    homes = {
        key: run_sweep(
            Sweep(
                a.benchmark,
                a.method,
                a.sampler,
                a.seed,
                a.trials,
                a.epochs_fixed,
                floor,
                a.max_concurrent,
                patience,
            ),
            root,
            reuse_only=bool(a.reuse),
        )
        for key, floor, patience in (("off", 0.0, 1), ("on", a.floor, a.patience))
    }
    floor_utility = args.floor * read_target_utility(homes["on"])
    res = {k: summarise(h, floor_utility) for k, h in homes.items()}
    off, on = res["off"], res["on"]
    same = sum(a == b for a, b in zip(off["params"], on["params"], strict=False))
    lead = same_prefix(off["params"], on["params"])
    saved = 1 - on["optimizer_steps"] / off["optimizer_steps"]
    loss = 1 - on["hv"] / off["hv"] if off["hv"] > 0 else float("nan")
    loss_above = (
        1 - on["hv_above_floor"] / off["hv_above_floor"]
        if off["hv_above_floor"] > 0
        else float("nan")
    )
    met = saved >= TARGET_SAVED and loss <= TARGET_HV_LOSS
    print(
        f"\n{args.method} on {args.benchmark} forget10, {args.sampler} seed {args.seed}, "
        f"{args.trials} trials, epochs {args.epochs_fixed or 'searched'}; floor "
        f"{args.floor:g} x target utility = {floor_utility:.3f}, patience {args.patience}"
    )
    print(
        f"  {'floor':6s} {'trials':>6s} {'stopped':>7s} {'failed':>6s} {'epochs':>6s} "
        f"{'opt steps':>9s} {'sweep s':>8s} {'trials s':>8s} {'HV':>8s} {'HV MU>=floor':>13s}"
    )
    for k, label in (("off", "0"), ("on", f"{args.floor:g}")):
        r = res[k]
        wall = f"{r['wall_s']:8.1f}" if r["wall_s"] is not None else f"{'reused':>8s}"
        print(
            f"  {label:6s} {r['trials']:6d} {r['stopped']:7d} {r['failed']:6d} "
            f"{r['epochs_run']:6d} {r['optimizer_steps']:9.0f} {wall} "
            f"{r['trial_phase_s']:8.0f} {r['hv']:8.3f} {r['hv_above_floor']:13.3f}"
        )
    n = min(off["trials"], on["trials"])
    print(
        f"  trials with identical parameters in both sweeps: {same}/{n} (the first {lead} in a row)"
    )
    print(
        f"  steps saved {saved:.1%}; hypervolume lost {loss:.2%} (rows with MU >= floor only: "
        f"{loss_above:.2%})"
    )
    print(
        f"  target: >= {TARGET_SAVED:.0%} of steps saved with hypervolume within "
        f"{TARGET_HV_LOSS:.0%}: {'met' if met else 'MISSED'}"
    )
    if args.json:
        settings = {k: v for k, v in vars(args).items() if k != "json"}
        Path(args.json).write_text(
            json.dumps(
                {
                    "settings": settings,
                    "machine": machine(),
                    "floor_utility": floor_utility,
                    "runs": res,
                    "identical_trials": same,
                    "identical_leading": lead,
                    "steps_saved": saved,
                    "hv_lost": loss,
                    "hv_lost_above_floor": loss_above,
                    "target_met": met,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
