"""Real sweeps on the small built-in benchmark through the command line (real Ray and Optuna,
CPU): a multi-objective sweep whose study matches Ray's results, a forced-NaN trial that ends
FAILED, a killed trial retried from its checkpoint, and the analysis, export and reproduction of
a real experiment. A killed driver resumed: the small soak in tests/test_reliability.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from optuna.trial import TrialState

pytestmark = pytest.mark.slow


def sweep_cmd(*args: str) -> list[str]:
    # epochs fixed at 2 keep each trial to a few seconds on 2 CPU cores
    return [
        sys.executable,
        "-m",
        "unlearn_sweep",
        "sweep",
        "--benchmark",
        "tiny-tofu-small",
        "--split",
        "forget10",
        "--fix",
        "epochs=2",
        "--max-concurrent",
        "2",
        *args,
    ]


def load_study(home, method="npo"):
    from sweeps import experiment

    return experiment.load_study(home, method)


def results(home, method="npo"):
    return [json.loads(line) for line in (home / "results" / f"{method}.jsonl").open()]


@pytest.fixture(scope="module")
def fault_sweep(tmp_path_factory, small_benchmark):
    """5 trials; the 2nd to start gets a NaN loss, the 3rd is SIGKILLed mid-epoch 2."""
    out = tmp_path_factory.mktemp("sweeps")
    env = {**os.environ, "UNLEARN_SWEEP_FAULTS": "nan@1,kill@2"}
    run = subprocess.run(
        sweep_cmd("--method", "npo", "--trials", "5", "--output", str(out), "--name", "faults"),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return out / "faults", run


def test_study_matches_ray_results_and_nan_trial_fails(fault_sweep):
    home, _ = fault_sweep
    study = load_study(home)
    assert study.metric_names == ["log10_forget_quality", "model_utility"]  # for the dashboard
    states = [t.state for t in study.trials]
    assert len(states) == 5 and TrialState.RUNNING not in states
    assert states.count(TrialState.COMPLETE) == 4 and states.count(TrialState.FAIL) == 1
    failed = next(t for t in study.trials if t.state == TrialState.FAIL)
    assert "loss became non-finite" in failed.user_attrs["failure"]
    rows = results(home)
    for t in study.trials:
        if t.state != TrialState.COMPLETE:
            continue
        ray_id = t.user_attrs["ray_trial_id"]
        last = [r for r in rows if r["event"] == "result" and r["trial_id"] == ray_id][-1]
        assert t.values == [last["log10_forget_quality"], last["model_utility"]]
        assert t.params == {k: v for k, v in last["params"].items() if k in t.params}
        assert t.constraints == {"utility_floor": last["utility_violation"]}
    # the diverged trial reported the cause, never objective values
    diverged = [r for r in rows if r.get("diverged")]
    assert len(diverged) == 1 and "log10_forget_quality" not in diverged[0]
    # the defaults were evaluated first
    first = study.trials[0].params
    assert first["lr"] == 1e-3 and first["beta"] == 0.1 and first["alpha"] == 1.0


def test_killed_trial_resumes_from_its_checkpoint(fault_sweep):
    home, _ = fault_sweep
    rows = results(home)
    retried = {r["trial_id"] for r in rows if r["event"] == "retry"}
    assert len(retried) == 1
    (tid,) = retried
    epochs = [r["epoch"] for r in rows if r["event"] == "result" and r["trial_id"] == tid]
    assert epochs == [1, 2]  # epoch 1 was not trained again: the retry restored its checkpoint
    steps = [r["optimizer_steps"] for r in rows if r["event"] == "result" and r["trial_id"] == tid]
    assert steps[1] == 2 * steps[0]
    every = [r for r in rows if r["event"] == "result" and "seeds" in r]
    for r in every:  # each row carries what reproduces it
        assert {
            "method",
            "hp/lr",
            "hp/beta",
            "seeds",
            "effective_batch",
            "optimizer_steps",
            "world_size",
            "epoch",
            "wall_time_s",
            "device",
            "version",
        } <= set(r)


def test_real_sweep_is_analysed_and_exported(fault_sweep):
    from unlearn_sweep.cli import main

    home, _ = fault_sweep
    assert main(["analyze", str(home)]) == 0
    for stem in ("pareto", "hypervolume", "params-npo", "importance"):
        assert (home / "analysis" / f"{stem}.png").stat().st_size > 0, stem
        assert (home / "analysis" / f"{stem}.html").stat().st_size > 0, stem
    md = (home / "report.md").read_text()
    assert "| npo | 5 |" in md and "## Pareto fronts per series" in md

    assert main(["export", str(home), "--rule", "knee"]) == 0
    doc = yaml.safe_load((home / "best" / "npo.yaml").read_text())
    assert doc == json.loads((home / "best" / "npo.json").read_text())
    job, doc = doc["job"], doc["info"]
    assert job["source"]["split"] == "forget10"
    assert set(job["hparams"]) == {"beta", "alpha", "gamma"}
    row = next(
        r
        for r in reversed(results(home))
        if r["event"] == "result" and r["trial_id"] == doc["trial"] and r["epoch"] == doc["epoch"]
    )
    assert doc["metrics"]["forget_quality"] == row["forget_quality"]
    assert doc["objectives"]["model_utility"] == row["model_utility"]


def test_exported_config_reproduces_the_sweep(fault_sweep):
    from unlearn_sweep.cli import main

    home, _ = fault_sweep
    assert main(["export", str(home), "--rule", "max-utility", "--min-forget-quality", "0"]) == 0
    doc = yaml.safe_load((home / "best" / "npo.yaml").read_text())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the threads a 1-CPU trial ran with
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "unlearn_sweep",
            "unlearn",
            "--config",
            str(home / "best" / "npo.yaml"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    now = _sweep_and_now(run)
    assert {"forget_quality", "model_utility", "forget_Q_A_ROUGE"} <= set(now)
    for k, (sweep, again) in now.items():
        assert again == pytest.approx(sweep, rel=1e-3), k
    assert now["model_utility"][0] == pytest.approx(
        doc["info"]["metrics"]["model_utility"], rel=1e-3
    )


def _sweep_and_now(run) -> dict[str, tuple[float, float]]:
    """The `sweep X   now Y` lines `unlearn --config` prints, by metric."""
    now = {}
    for line in run.stdout.splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[1] == "sweep" and parts[3] == "now":
            now[parts[0]] = (float(parts[2]), float(parts[4]))
    return now


def test_export_of_a_sweep_with_prompt_settings_reruns_its_job(tmp_path, small_benchmark):
    """The reproduced bug of issue 13: the prompt settings travel with the exported job."""
    from unlearn_core.job import job_from_dict
    from unlearn_sweep.cli import main

    prompt = ["--template", "base", "--system-prompt", "", "--date-string", "1 Jan 2026"]
    cmd = [sys.executable, "-m", "unlearn_sweep", "sweep", "--benchmark", "tiny-tofu-small"]
    cmd += ["--method", "grad_ascent", "--trials", "1", "--fix", "epochs=1", *prompt]
    run = subprocess.run(
        [*cmd, "--output", str(tmp_path), "--name", "p"], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    home = tmp_path / "p"
    assert main(["export", str(home), "--rule", "knee"]) == 0
    best = home / "best" / "grad_ascent.yaml"
    job = yaml.safe_load(best.read_text())["job"]
    assert job["source"]["prompt"] == {
        "template": "base",
        "system_prompt": None,
        "date_string": "1 Jan 2026",
        "max_length": 512,
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the threads a 1-CPU trial ran with
    out = tmp_path / "again"
    again = ["unlearn", "--config", str(best), "--output", str(out)]
    run = subprocess.run(
        [sys.executable, "-m", "unlearn_sweep", *again],
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    ran = json.loads((out / "metrics.json").read_text())["job"]
    assert job_from_dict(ran) == job_from_dict(job)  # the same job, prompt included
    now = _sweep_and_now(run)
    assert {"forget_quality", "model_utility", "forget_Q_A_ROUGE"} <= set(now)
    for k, (sweep, again) in now.items():
        assert again == pytest.approx(sweep, rel=1e-3), k


def test_utility_floor_stops_after_patience_evaluations_in_a_row():
    from sweeps.config import SweepConfig
    from sweeps.launch import UtilityFloor
    from unlearn_core.errors import UserError

    assert UtilityFloor(0.5)("a", {"model_utility": 0.49})  # default: the first dip stops it
    floor = UtilityFloor(0.5, patience=2)
    assert not floor("b", {"model_utility": 0.4})
    assert not floor("b", {"model_utility": 0.6})  # recovered: the count starts again
    assert not floor("b", {"model_utility": 0.4})
    assert floor("b", {"model_utility": 0.3})
    assert not floor("c", {"diverged": 1.0, "failure": "nan"})  # no utility: nothing to judge
    with pytest.raises(UserError, match="floor_patience must be >= 1"):
        SweepConfig(method="npo", floor_patience=0)
