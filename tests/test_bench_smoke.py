"""benchmarks/bench_floor.py and bench_search.py at their smallest size, run as a user runs them.
bench_floor runs two real sweeps (npo, 2 trials of 1 epoch, floor 0.5 and off); bench_search then
analyses that real floor-off TPE sweep with grid, random and GP folders written by the analysis
fixtures (--reuse: it starts no sweep, which keeps the file near a minute). Both exit 0, print their
tables and target lines, and report finite figures that agree with their JSON."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_analysis.fake import write_experiment

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
SMALL = ["--epochs-fixed", "1", "--max-concurrent", "2"]
TARGET_LINE = re.compile(r"^  target: .*: (met|MISSED)", re.M)


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    env.pop("RAY_ADDRESS", None)  # each script starts its own local Ray
    return subprocess.run(
        [sys.executable, str(BENCH / name), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )


def finite(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


@pytest.fixture(scope="module")
def floor_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    out = root / "floor.json"
    proc = run_script(
        "bench_floor.py",
        "--method",
        "npo",
        "--trials",
        "2",
        *SMALL,
        "--output",
        str(root / "sweeps"),
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    return proc, root, json.loads(out.read_text())


@pytest.mark.slow
def test_bench_floor_reports_steps_time_and_hypervolume(floor_run):
    proc, _, r = floor_run
    verdicts = TARGET_LINE.findall(proc.stdout)
    assert verdicts == ["met" if r["target_met"] else "MISSED"], proc.stdout
    for key in ("off", "on"):
        run = r["runs"][key]
        assert run["trials"] == 2 and run["epochs_run"] >= 2
        assert run["optimizer_steps"] > 0 and run["wall_s"] > 0 and run["trial_phase_s"] > 0
        assert finite(run["hv"]) and run["hv"] > 0 and finite(run["hv_above_floor"])
    assert finite(r["steps_saved"]) and finite(r["hv_lost"])
    assert 0 < r["floor_utility"] < 1 and r["identical_trials"] >= 1  # trial 0: the defaults
    assert f"{r['steps_saved']:.1%}" in proc.stdout


@pytest.mark.slow
def test_bench_search_tables_from_reused_sweeps(floor_run):
    _, root, _ = floor_run
    sweeps = root / "sweeps"
    sys.path.insert(0, str(BENCH))
    from bench_search import GRID_SIZE, Sweep

    # tpe: the real sweep bench_floor ran with floor 0; the grid always has its 27 points
    for sampler, n in (("grid", GRID_SIZE), ("random", 2), ("gp", 2)):
        write_experiment(
            sweeps / Sweep("tiny-tofu-small", "npo", sampler, 0, n, 1, 0.0, 2).name,
            methods=("npo",),
            trials=n,
            seed=0,
            outcomes={},
            sampler=sampler,
            fixed={"epochs": 1},
            utility_floor=0.0,
            max_concurrent=2,
        )
    out = root / "search.json"
    proc = run_script(
        "bench_search.py",
        "--methods",
        "npo",
        "--budgets",
        "1,2",
        "--trials-max",
        "2",
        "--seeds",
        "1",
        *SMALL,
        "--reuse",
        str(sweeps),
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-4000:]
    assert "running:" not in proc.stderr  # --reuse starts no sweep
    assert len(TARGET_LINE.findall(proc.stdout)) == 2, proc.stdout
    r = json.loads(out.read_text())["methods"]["npo"]
    assert finite(r["grid_hv"]) and r["grid_hv"] > 0
    assert len(r["grid"]["curve"]) == GRID_SIZE and len(r["grid"]["order"]) == GRID_SIZE
    for sampler in ("random", "tpe", "gp"):
        s = r["samplers"][sampler]
        assert all(finite(m) and m > 0 for m, _ in s["hv"].values())
        assert s["hv"]["1"][0] <= s["hv"]["2"][0]  # more trials never lose area
        assert s["per_seed"]["0"]["optimizer_steps"] > 0
        assert f"{s['hv']['2'][0]:.3f}" in proc.stdout
    assert r["targets"]["defaults"]["of"] == 3
