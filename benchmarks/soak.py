"""Soak (issue 8): a sweep with injected faults (worker kill, exception, NaN loss in ~10% of trials
each) whose driver is SIGKILLed with its process group at seeded random moments and resumed with
`unlearn-sweep resume`; then it accounts for every trial, looks for configurations run twice, runs
`analyze` and `export --rule knee`, and reports disk and driver memory. The counts are the last
lines printed; `--json` also writes them (tests/test_reliability.py runs a small soak).

    UNLEARN_SWEEP_CACHE=... HF_HUB_OFFLINE=1 nice -n 19 .venv/bin/python benchmarks/soak.py
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

# the command line as `python -m unlearn_sweep`: the same main() as the installed `unlearn-sweep`,
# whichever version of the package an existing install's script was generated for
CLI = [sys.executable, "-m", "unlearn_sweep"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--trials", type=int, default=40)
    ap.add_argument("--seed", type=int, default=3, help="seeds the faults and the kill moments")
    ap.add_argument("--driver-kills", type=int, default=2)
    ap.add_argument("--rate", type=float, default=0.1, help="chance of each fault kind per trial")
    ap.add_argument("--faults", help="an UNLEARN_SWEEP_FAULTS spec used instead of --rate")
    ap.add_argument("--method", default="npo")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--max-concurrent", type=int, default=2)
    ap.add_argument(
        "--max-delay",
        type=float,
        default=5.0,
        help="a kill lands up to this many seconds after its trial count is reached",
    )
    ap.add_argument("--output", help="folder for the experiment and driver logs (default: temp)")
    ap.add_argument("--json", help="also write the counts to this file")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds for the whole soak")
    return ap.parse_args(argv)


def kill_plan(trials: int, kills: int, seed: int, max_delay: float) -> list[tuple[int, float]]:
    """Per driver kill: the finished-trial count to wait for (>= 1, within the first 80%) and a
    delay after it; seeded, so a soak can be repeated."""
    rng = random.Random(seed)
    counts = list(range(1, max(2, int(0.8 * trials))))
    chosen = sorted(
        rng.sample(counts, kills) if kills <= len(counts) else rng.choices(counts, k=kills)
    )
    return [(c, rng.uniform(0.0, max_delay)) for c in chosen]


def results(home: Path, method: str) -> list[dict]:
    """The results log's rows; a line a killed driver cut short is skipped (counted apart)."""
    path = home / "results" / f"{method}.jsonl"
    rows = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return rows


def finished(home: Path, method: str) -> int:
    rows = results(home, method)
    return len({r["trial_id"] for r in rows if r["event"] in ("complete", "error")})


def start(cmd: list[str], log: Path, env: dict) -> subprocess.Popen:
    with open(log, "w") as f:  # a process group of its own: the kill takes Ray's processes too
        return subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def run_with_kills(args: argparse.Namespace, home: Path, logs: Path, env: dict) -> list[dict]:
    """The sweep, SIGKILLed per the plan and resumed each time; returns the kills that landed."""
    sweep = [
        *CLI,
        "sweep",
        "--method",
        args.method,
        "--benchmark",
        "tiny-tofu-small",
        "--split",
        "forget10",
        "--trials",
        str(args.trials),
        "--seed",
        str(args.seed),
        "--fix",
        f"epochs={args.epochs}",
        "--max-concurrent",
        str(args.max_concurrent),
        "--output",
        str(home.parent),
        "--name",
        home.name,
    ]
    resume = [*CLI, "resume", str(home)]
    deadline = time.time() + args.timeout
    kills: list[dict] = []
    cmd, proc = sweep, None
    for count, delay in kill_plan(args.trials, args.driver_kills, args.seed, args.max_delay):
        proc = start(cmd, logs / f"driver-{len(kills)}.log", env)
        target = max(count, finished(home, args.method) + 1)  # each driver finishes one first
        while proc.poll() is None and finished(home, args.method) < target:
            time.sleep(0.5)
            if time.time() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                raise SystemExit("soak: timed out")
        until = time.time() + delay
        while proc.poll() is None and time.time() < until:
            time.sleep(0.1)
        if proc.poll() is not None:  # the sweep ended before this kill
            break
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kills.append({"after_finished": finished(home, args.method), "delay_s": round(delay, 2)})
        cmd, proc = resume, None
    if proc is None:
        proc = start(cmd, logs / f"driver-{len(kills)}.log", env)
    try:
        rc = proc.wait(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise SystemExit("soak: timed out") from None
    if rc != 0:
        raise SystemExit(f"soak: the last driver exited {rc}; see {logs}")
    return kills


def _cause(text: str | None) -> str:
    if not text:
        return "(no cause recorded)"
    return "loss became non-finite" if "non-finite" in text else text[:60]


def account(home: Path, method: str, trials: int) -> dict:
    """Optuna's study against Ray's trials (the results log) and the injected faults."""
    from optuna.trial import TrialState

    from sweeps.experiment import is_epoch_point, load_study

    study = load_study(home, method)
    trials_ = [t for t in study.trials if not is_epoch_point(t)]  # not a trial's earlier epochs
    rows = results(home, method)
    ray_done = {r["trial_id"] for r in rows if r["event"] in ("complete", "error")}
    errors = {r["trial_id"]: r["run"].get("error", "") for r in rows if r["event"] == "error"}
    every_fail = [t for t in trials_ if t.state == TrialState.FAIL]
    lost = [t for t in every_fail if t.user_attrs.get("failure", "").startswith("lost")]
    fails = [t for t in every_fail if t not in lost]
    done = [t for t in trials_ if t.state == TrialState.COMPLETE]
    linked = Counter(t.user_attrs.get("ray_trial_id") for t in done + fails)

    def cause(t) -> str:
        text = t.user_attrs.get("failure")
        if text == "error":  # Optuna records only "error"; the results log says what it was
            return f"error: {errors.get(t.user_attrs.get('ray_trial_id'), '?')[:60]}"
        return _cause(text)

    causes = Counter(cause(t) for t in fails)
    params = [tuple(sorted(t.params.items())) for t in done]
    per_ray = {r["trial_id"]: tuple(sorted(r["params"].items())) for r in rows if "params" in r}
    completes = Counter(r["trial_id"] for r in rows if r["event"] == "complete")
    fired = Counter(p.read_text() for p in (home / "faults").glob("*.fired"))
    return {
        "requested": trials,
        "optuna_trials": len(trials_),
        "complete": len(done),
        "failed": len(fails),
        "failed_by_cause": dict(causes),
        "lost": len(lost),
        "running": sum(t.state == TrialState.RUNNING for t in trials_),
        "no_cause": sum("failure" not in t.user_attrs for t in every_fail),
        "ray_trials_finished": len(ray_done),
        "ray_trials_not_in_optuna": len(ray_done - set(linked)),
        "ray_trials_told_twice": sum(n > 1 for k, n in linked.items() if k is not None),
        "duplicate_configs_complete": len(params) - len(set(params)),
        "duplicate_configs_results": len(per_ray) - len(set(per_ray.values())),
        "trials_completed_twice": sum(n > 1 for n in completes.values()),
        "results_lines_unreadable": len(
            (home / "results" / f"{method}.jsonl").read_text().splitlines()
        )
        - len(rows),
        "faults_fired": dict(fired),
    }


def checkpoints(home: Path, method: str) -> int:
    """The most checkpoint_* folders any trial folder holds (a finished trial keeps its last)."""
    trial_dirs = [d for d in (home / "ray" / method).iterdir() if d.is_dir()]
    return max((len(list(d.glob("checkpoint_*"))) for d in trial_dirs), default=0)


def disk_mib(home: Path) -> dict[str, float]:
    sizes: Counter = Counter()
    for root, _, files in os.walk(home):
        part = Path(root).relative_to(home).parts[:1] or ("(top)",)
        for name in files:
            sizes[part[0]] += os.lstat(Path(root) / name).st_size
    return {
        "total": round(sum(sizes.values()) / 2**20, 1),
        **{k: round(v / 2**20, 1) for k, v in sorted(sizes.items())},
    }


def driver_memory(home: Path, trials: int) -> dict:
    """Driver RSS after >= 5 finished trials and at the end, and the growth within each driver
    process (a resumed driver is a new process that starts small again)."""
    rows = [
        json.loads(ln)
        for ln in (home / "driver_memory.jsonl").read_text().splitlines()
        if ln.endswith("}")
    ]
    at5 = next(r for r in rows if r["finished"] >= min(5, trials))
    end = max(rows, key=lambda r: (r["finished"], r["time"]))
    per_pid: dict[int, list[dict]] = {}
    for r in rows:
        per_pid.setdefault(r["pid"], []).append(r)
    growth = {
        pid: {
            "finished": [rs[0]["finished"], rs[-1]["finished"]],
            "rss_mib": [round(rs[0]["rss_mb"]), round(rs[-1]["rss_mb"])],
        }
        for pid, rs in per_pid.items()
    }
    return {
        "at": [at5["finished"], end["finished"]],
        "rss_mib": [round(at5["rss_mb"]), round(end["rss_mb"])],
        "same_process": at5["pid"] == end["pid"],
        "ratio": round(end["rss_mb"] / at5["rss_mb"], 2),
        "max_ratio_within_a_process": round(
            max(rs[-1]["rss_mb"] / rs[0]["rss_mb"] for rs in per_pid.values()), 2
        ),
        "per_process": growth,
    }


def analyze_and_export(home: Path, env: dict) -> dict[str, int]:
    codes = {}
    for name, cmd in (
        ("analyze", ["analyze", str(home)]),
        ("export_knee", ["export", str(home), "--rule", "knee"]),
    ):
        run = subprocess.run([*CLI, *cmd], env=env, capture_output=True, text=True)
        codes[name] = run.returncode
        if run.returncode != 0:
            print(run.stderr[-2000:], file=sys.stderr)
    return codes


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    spec = args.faults or f"kill={args.rate},raise={args.rate},nan={args.rate},seed={args.seed}"
    env = {**os.environ, "UNLEARN_SWEEP_FAULTS": spec}
    out = Path(args.output or tempfile.mkdtemp(prefix="unlearn-soak-")).absolute()
    home, logs = out / "soak", out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.time()
    kills = run_with_kills(args, home, logs, env)
    wall = time.time() - started
    counts = {
        "faults": spec,
        "driver_kills": kills,
        "wall_s": round(wall),
        **account(home, args.method, args.trials),
        "max_checkpoints_per_trial": checkpoints(home, args.method),
        **analyze_and_export(home, {k: v for k, v in env.items() if k != "UNLEARN_SWEEP_FAULTS"}),
        "disk_mib": disk_mib(home),
        "driver_memory": driver_memory(home, args.trials),
        "experiment": str(home),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(counts, indent=1))
    for key, value in counts.items():
        print(f"{key:28s} {json.dumps(value)}")
    return counts


if __name__ == "__main__":
    main()
