"""Real sweeps on the small built-in benchmark through the command line (real Ray and Optuna,
CPU): a multi-objective sweep whose study matches Ray's results, a forced-NaN trial that ends
FAILED, a killed trial retried from its checkpoint, the analysis, export and reproduction of a
real experiment, nothing left in the temp dir or the process table, one checkpoint per finished
trial, and a finished trial that a stale Ray state restores reported again without training. A
killed driver resumed: the small soak in tests/test_reliability.py."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from optuna.trial import TrialState

from sweeps.experiment import EPOCH_OF, is_epoch_point

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


MARK = "UNLEARN_SWEEP_TEST_RUN"  # in the environment of every process a test's sweep starts


def sweep_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A private system temp dir (so other jobs' files never count) and a marker that Ray's
    processes inherit from the driver, so the test can find any it left running."""
    tmp.mkdir(exist_ok=True)
    # Ray's own session folder stays where it always is: its socket paths have a length limit
    ray_tmp = os.environ.get("RAY_TMPDIR", "/tmp")
    mark = uuid.uuid4().hex
    return {**os.environ, "TMPDIR": str(tmp), "RAY_TMPDIR": ray_tmp, MARK: mark, **extra}


@pytest.fixture(scope="module")
def fault_sweep(tmp_path_factory, small_benchmark):
    """5 trials; the 2nd to start gets a NaN loss, the 3rd is SIGKILLed mid-epoch 2."""
    out = tmp_path_factory.mktemp("sweeps")
    env = sweep_env(out / "tmp", UNLEARN_SWEEP_FAULTS="nan@1,kill@2")
    run = subprocess.run(
        sweep_cmd("--method", "npo", "--trials", "5", "--output", str(out), "--name", "faults"),
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,  # 5 trials of 2 epochs; a loaded 2-core CI machine starts Ray workers slowly
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return out / "faults", run, env


def test_study_matches_ray_results_and_nan_trial_fails(fault_sweep):
    home, *_ = fault_sweep
    study = load_study(home)
    assert study.metric_names == ["log10_forget_quality", "model_utility"]  # for the dashboard
    told = [t for t in study.trials if not is_epoch_point(t)]
    states = [t.state for t in told]
    assert len(states) == 5 and TrialState.RUNNING not in states
    assert states.count(TrialState.COMPLETE) == 4 and states.count(TrialState.FAIL) == 1
    failed = next(t for t in told if t.state == TrialState.FAIL)
    assert "loss became non-finite" in failed.user_attrs["failure"]
    rows = results(home)
    # every evaluated epoch but a told trial's last is a study trial of its own (EPOCH_OF)
    points = {
        (t.user_attrs[EPOCH_OF], t.user_attrs["epoch"]): t for t in study.trials if t not in told
    }
    evaluated = {(r["trial_id"], r["run"]["epoch"]): r for r in rows if "objectives" in r}
    for r in evaluated.values():  # how training went since the last evaluation (issue 15)
        run = r["run"]
        assert math.isfinite(run["train_loss"]) and run["lr"] >= 0
        assert run["tokens_per_s"] > 0 and run["peak_memory_gib"] > 0
    last = {(t.user_attrs["ray_trial_id"], t.user_attrs["epoch"]) for t in told if t.values}
    assert set(points) == set(evaluated) - last and points
    for key, p in points.items():
        values = evaluated[key]["objectives"]
        assert p.values == [values["log10_forget_quality"], values["model_utility"]]
        assert (
            p.user_attrs["stop_after"] == key[1]
            and p.params["lr"] == evaluated[key]["params"]["lr"]
        )
    for t in told:
        if t.state != TrialState.COMPLETE:
            continue
        ray_id = t.user_attrs["ray_trial_id"]
        last = [r for r in rows if r["event"] == "result" and r["trial_id"] == ray_id][-1]
        values = last["objectives"]
        assert t.values == [values["log10_forget_quality"], values["model_utility"]]
        assert values["model_utility"] == last["metrics"]["model_utility"]
        assert t.params == {k: v for k, v in last["params"].items() if k in t.params}
        assert t.constraints == {"utility_floor": last["run"]["utility_violation"]}
        assert t.user_attrs["epoch"] == last["run"]["epoch"]
    # the diverged trial reported the cause, never objective values
    diverged = [r for r in rows if r["run"].get("diverged")]
    assert len(diverged) == 1 and "objectives" not in diverged[0]
    assert "loss became non-finite" in diverged[0]["run"]["failure"]
    # the defaults were evaluated first
    first = told[0].params
    assert first["lr"] == 1e-3 and first["beta"] == 0.1 and first["alpha"] == 1.0


def test_killed_trial_resumes_from_its_checkpoint(fault_sweep):
    home, *_ = fault_sweep
    rows = results(home)
    retried = {r["trial_id"] for r in rows if r["event"] == "retry"}
    assert len(retried) == 1
    (tid,) = retried
    mine = [r["run"] for r in rows if r["event"] == "result" and r["trial_id"] == tid]
    assert [r["epoch"] for r in mine] == [1, 2]  # epoch 1 not trained again: the checkpoint
    assert mine[1]["optimizer_steps"] == 2 * mine[0]["optimizer_steps"]
    every = [r for r in rows if r["event"] == "result" and "objectives" in r]
    for r in every:  # each row carries what reproduces it, in its sections
        assert set(r) == {"event", "trial_id", "method", "params", "objectives", "metrics", "run"}
        assert {"lr", "beta", "alpha", "gamma", "epochs"} <= set(r["params"])
        assert set(r["objectives"]) == {"log10_forget_quality", "model_utility"}
        assert {"forget_quality", "model_utility", "forget_Q_A_ROUGE"} <= set(r["metrics"])
        assert {
            "seeds",
            "effective_batch",
            "optimizer_steps",
            "world_size",
            "epoch",
            "wall_time_s",
            "device",
            "version",
            "training_iteration",  # Ray's own bookkeeping joins the run section
        } <= set(r["run"])
        assert not {"config", "node_ip", "hostname", "trial_id"} & set(r["run"])


def test_real_sweep_is_analysed_and_exported(fault_sweep):
    from unlearn_sweep.cli import main

    home, *_ = fault_sweep
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
        if r["event"] == "result"
        and r["trial_id"] == doc["trial"]
        and r["run"]["epoch"] == doc["epoch"]
    )
    assert doc["metrics"] == row["metrics"]  # every metric, and nothing else
    assert doc["objectives"] == row["objectives"]


def test_exported_config_reproduces_the_sweep(fault_sweep):
    from unlearn_sweep.cli import main

    home, *_ = fault_sweep
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
    from sweeps import rows
    from sweeps.config import SweepConfig
    from sweeps.launch import UtilityFloor
    from unlearn_core.errors import UserError

    def result(utility: float) -> dict:  # a report as Ray hands it to stoppers: in sections
        return rows.report({"epoch": 1}, {"model_utility": utility}, {"model_utility": utility})

    assert UtilityFloor(0.5)("a", result(0.49))  # default: the first dip stops it
    floor = UtilityFloor(0.5, patience=2)
    assert not floor("b", result(0.4))
    assert not floor("b", result(0.6))  # recovered: the count starts again
    assert not floor("b", result(0.4))
    assert floor("b", result(0.3))
    assert not floor("c", rows.report({"diverged": 1.0, "failure": "nan"}))  # nothing to judge
    with pytest.raises(UserError, match="floor_patience must be >= 1"):
        SweepConfig(method="npo", floor_patience=0)


def test_prune_keeps_the_last_checkpoint_of_trials_finished_in_the_backed_up_state(tmp_path):
    from sweeps.callbacks import prune_finished

    def state(statuses: dict[str, str]) -> str:
        named = {
            "a": "checkpoint_000001",
            "b": "checkpoint_000001",
            "c": None,
            "d": "checkpoint_000000",
        }
        rows = [
            [
                json.dumps({"trial_id": t, "status": s, "relative_logdir": f"trainable_{t}"}),
                json.dumps({"last_result": {"checkpoint_dir_name": named[t]}}),
            ]
            for t, s in statuses.items()
        ]
        return json.dumps({"trial_data": rows})

    for t in "abcd":
        for i in range(3):
            (tmp_path / f"trainable_{t}" / f"checkpoint_00000{i}").mkdir(parents=True)
    backup = tmp_path / ".backup"
    backup.mkdir()
    # b finished in the newest state only: the backup (what a repair restores) says RUNNING
    newest = {"a": "TERMINATED", "b": "TERMINATED", "c": "TERMINATED", "d": "ERROR"}
    (tmp_path / "experiment_state-2.json").write_text(state(newest))
    (backup / "experiment_state-2.json").write_text(state(newest | {"b": "RUNNING"}))
    (backup / "experiment_state-1.json").write_text(state(dict.fromkeys("abcd", "RUNNING")))
    prune_finished(tmp_path, backup)
    held = {t: sorted(c.name for c in (tmp_path / f"trainable_{t}").iterdir()) for t in "abcd"}
    assert held == {
        "a": ["checkpoint_000001"],  # the one Ray's state names as the trial's latest
        "b": ["checkpoint_000000", "checkpoint_000001", "checkpoint_000002"],
        "c": ["checkpoint_000002"],  # its last report had no checkpoint: the newest stays
        # a worker that died after saving its next checkpoint: Ray's latest is the older one
        "d": ["checkpoint_000000"],
    }


def marked_processes(mark: str, wait_s: float = 30.0) -> list[str]:
    """Command lines of live processes carrying the sweep's marker, after Ray had `wait_s` to
    end them (raylet stops its workers asynchronously after the driver exits)."""
    import psutil  # a dependency of ray

    deadline = time.monotonic() + wait_s
    while True:
        left = []
        for p in psutil.process_iter(["cmdline", "status"]):
            try:
                if p.info["status"] != psutil.STATUS_ZOMBIE and p.environ().get(MARK) == mark:
                    left.append(" ".join(p.info["cmdline"] or [])[:200])
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(1)


def test_a_finished_sweep_leaves_no_checkpoint_in_tmp_and_no_ray_process(fault_sweep):
    _, _, env = fault_sweep
    # every evaluated epoch of every trial (and the killed trial's retry) saved a checkpoint
    assert not list(Path(env["TMPDIR"]).glob("unlearn-ckpt-*"))
    # raylet, GCS and every worker (`ray::...`, default_worker.py) inherit the marker
    left = marked_processes(env[MARK])
    assert not left, left


def trial_checkpoints(home: Path) -> dict[str, list[str]]:
    """Ray trial id -> the checkpoint folders its trial folder holds."""
    out = {}
    for d in (home / "ray" / "npo").iterdir():
        if d.is_dir() and d.name.startswith("trainable_"):
            out[d.name.split("_")[1]] = sorted(c.name for c in d.glob("checkpoint_*"))
    return out


def test_each_finished_trial_keeps_only_its_last_checkpoint(fault_sweep):
    import torch

    home, *_ = fault_sweep
    held = trial_checkpoints(home)
    assert len(held) == 5 and all(len(c) <= 1 for c in held.values()), held
    for t in load_study(home).trials:
        if t.state != TrialState.COMPLETE or is_epoch_point(t):  # a point is no Ray trial
            continue
        tid = t.user_attrs["ray_trial_id"]
        # 2 epochs, 2 checkpoints written (Ray keeps 2 while running): the last one stays
        assert held[tid] == ["checkpoint_000001"], (tid, held[tid])
        folder = next((home / "ray" / "npo").glob(f"trainable_{tid}_*")) / held[tid][0]
        saved = torch.load(folder / "state.pt", weights_only=False)
        assert saved["progress"]["last"]["run"]["epoch"] == 2  # the final record, for a re-report


def test_a_trial_a_stale_state_restores_is_reported_again_without_training(fault_sweep):
    """Runs last in this module: the resume appends a row to the sweep's results log.

    A driver killed after a trial's last report but before Ray saved it as finished leaves a
    state with that trial RUNNING: the resume restores it from its one remaining checkpoint and
    the trainable re-reports the final record instead of training."""
    home, _, env = fault_sweep
    study_before = [(t.state, t.params, t.values) for t in load_study(home).trials]
    told = [t for t in load_study(home).trials if not is_epoch_point(t)]
    tid = next(t for t in told if t.state == TrialState.COMPLETE).user_attrs["ray_trial_id"]
    exp = home / "ray" / "npo"
    (path,) = sorted(exp.glob("experiment_state-*.json"))[-1:]
    state = json.loads(path.read_text())
    for i, (trial_json, _) in enumerate(state["trial_data"]):
        trial = json.loads(trial_json)
        if trial["trial_id"] == tid:
            state["trial_data"][i][0] = json.dumps({**trial, "status": "RUNNING"})
    path.write_text(json.dumps(state))
    before = results(home)
    env = {**{k: v for k, v in env.items() if k != "UNLEARN_SWEEP_FAULTS"}, MARK: uuid.uuid4().hex}
    run = subprocess.run(
        [sys.executable, "-m", "unlearn_sweep", "resume", str(home)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    new = results(home)[len(before) :]
    assert [r["event"] for r in new] == ["result"] and new[0]["trial_id"] == tid, new
    last = [r for r in before if r["event"] == "result" and r["trial_id"] == tid][-1]
    # the same record: its wall time and step count prove nothing was trained again
    for key in ("epoch", "optimizer_steps", "wall_time_s"):
        assert new[0]["run"][key] == last["run"][key], key
    assert new[0]["metrics"] == last["metrics"] and new[0]["objectives"] == last["objectives"]
    assert [(t.state, t.params, t.values) for t in load_study(home).trials] == study_before
    assert trial_checkpoints(home)[tid] == ["checkpoint_000001"]
    assert not list(Path(env["TMPDIR"]).glob("unlearn-ckpt-*"))
    assert not marked_processes(env[MARK])


def test_study_status_analysis_and_export_share_one_front(tmp_path, small_benchmark, capsys):
    """A 4-trial sweep with 3 epochs evaluated each: the study holds every evaluated epoch (4
    told trials, 8 earlier epochs as points), its best_trials are the analysis front point for
    point, `status` prints that front, and the exported knee is one of its points."""
    from analysis.summary import analyze, front_table
    from unlearn_sweep.cli import main

    args = ["--method", "npo", "--trials", "4", "--output", str(tmp_path), "--name", "front"]
    cmd = sweep_cmd(*args, "--split", "forget01", "--fix", "epochs=3", "--utility-floor", "0")
    run = subprocess.run(cmd, env=sweep_env(tmp_path / "tmp"), capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    home = tmp_path / "front"
    study = load_study(home)
    told = [t for t in study.trials if not is_epoch_point(t)]
    assert len(told) == 4 and len(study.trials) == 4 * 3
    a = analyze([home])
    table = front_table(a, "npo")
    keys = ["log10_forget_quality", "model_utility"]
    ours = {(r.trial_id, int(r.epoch)): [getattr(r, k) for k in keys] for r in table.itertuples()}
    theirs = {
        (
            t.user_attrs.get(EPOCH_OF) or t.user_attrs["ray_trial_id"],
            t.user_attrs["epoch"],
        ): t.values
        for t in study.best_trials
    }
    assert ours == theirs
    assert main(["status", str(home)]) == 0
    shown = [ln for ln in capsys.readouterr().out.splitlines() if ln.lstrip().startswith("trial")]
    assert len(shown) == len(ours)
    assert main(["export", str(home), "--rule", "knee"]) == 0
    info = json.loads((home / "best" / "npo.json").read_text())["info"]
    assert (info["trial"], info["epoch"]) in ours
