"""Sweep overhead: the same N trials (same configurations and seeds) run through `unlearn-sweep
sweep` (Ray Tune + Optuna, trials in parallel on the machine's CPUs) and as a plain in-process
loop of `run_job` calls; prints both wall times and their ratio (target <= 1.15 for 12 trials).

    python benchmarks/bench_overhead.py [--trials 12] [--benchmark tiny-tofu-small]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--benchmark", default="tiny-tofu-small")
    ap.add_argument("--method", default="npo")
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args(argv)

    import optuna
    import torch

    from sweeps.config import SweepConfig, make_job
    from sweeps.experiment import is_epoch_point, journal
    from unlearn_core.job import run_job
    from unlearn_core.source import Source
    from unlearn_sweep.cli import main as cli

    cli(["prepare", args.benchmark])
    with tempfile.TemporaryDirectory() as tmp:
        name = "overhead"
        sweep = [
            "sweep",
            "--method",
            args.method,
            "--benchmark",
            args.benchmark,
            "--trials",
            str(args.trials),
            "--fix",
            f"epochs={args.epochs}",
            "--utility-floor",
            "0",
            "--output",
            tmp,
            "--name",
            name,
        ]
        # Ray's start and the reference/target evaluation happen once per sweep, before the
        # trials: the ratio compares the trial phase, and the whole command is shown too
        home = Path(tmp) / name
        t0 = time.perf_counter()
        if code := cli(sweep):
            return code
        sweep_s = time.perf_counter() - t0
        trials_s = _trial_phase_seconds(home)
        study = optuna.load_study(
            study_name=args.method, storage=journal(home / "optuna" / f"{args.method}.journal")
        )
        # the sweep's trials (not a trial's earlier epochs), each with the values its space held
        params = [t.params for t in study.trials if not is_epoch_point(t)]
        cfg = SweepConfig(
            method=args.method,
            source=Source(args.benchmark),
            trials=args.trials,
            utility_floor=0.0,
            fixed={"epochs": args.epochs},
        )
        reference = str(home / "reference" / f"{args.benchmark}-forget10.json")
        torch.set_num_threads(os.cpu_count() or 1)
        t0 = time.perf_counter()
        for p in params:
            run_job(
                make_job(cfg, cfg.space_options().fixed | p, cfg.seed, reference),
                eval_before=False,
                eval_every=cfg.eval_every,
            )
        loop_s = time.perf_counter() - t0
    print(
        f"\n{args.trials} trials of {args.method} ({args.epochs} epochs, evaluated every epoch) "
        f"on {args.benchmark}, {os.cpu_count()} CPUs"
    )
    print(f"  sweep (Ray Tune + Optuna), whole command     {sweep_s:8.1f} s")
    print(f"  sweep, first trial start to last result   {trials_s:8.1f} s")
    print(f"  plain in-process loop                       {loop_s:8.1f} s")
    ratio = trials_s / loop_s
    print(
        f"  ratio sweep/loop (trials only)              {ratio:8.2f}  "
        f"(target <= 1.15: {'met' if ratio <= 1.15 else 'MISSED'})"
    )
    print(f"  ratio sweep/loop (whole command)            {sweep_s / loop_s:8.2f}")
    return 0


def _trial_phase_seconds(home: Path) -> float:
    """From the first trial's start to the last result (Ray's trial timestamps, 1 s resolution)."""
    import json

    rows = [json.loads(line) for line in next((home / "results").glob("*.jsonl")).open()]
    runs = [r["run"] for r in rows if r.get("event") == "result" and "wall_time_s" in r["run"]]
    return max(r["timestamp"] for r in runs) - min(r["timestamp"] - r["wall_time_s"] for r in runs)


if __name__ == "__main__":
    sys.exit(main())
