"""The result row in sections (sweeps/rows.py) without a sweep: what ResultsLog writes of a report
with Ray's fields beside it, the flat names under which the installed Ray's searcher finds the
objectives (Ray flattens a nested report with "/"), and the searcher and the progress line reading
a sectioned report."""

from __future__ import annotations

import optuna
from ray.tune.utils import flatten_dict

from search_spaces._common import SpaceOptions
from sweeps import experiment, rows
from sweeps.callbacks import Progress
from sweeps.search import make_searcher

KEYS = ["log10_forget_quality", "model_utility"]
METRICS = {"forget_quality": 1e-3, "model_utility": 0.8, "forget_Q_A_ROUGE": 0.4}
RUN = {"epoch": 2, "seeds": [0], "optimizer_steps": 6, "utility_violation": -0.4}
RAY = {"timestamp": 1.8e9, "training_iteration": 2, "done": False, "pid": 7}
ADDRESSES = {"trial_id": "t1", "hostname": "node-7", "node_ip": "10.0.0.7"}


def _report(**run) -> dict:
    return rows.report(RUN | run, {KEYS[0]: -3.0, KEYS[1]: 0.8}, METRICS)


def test_a_logged_row_holds_the_sections_and_ray_fields_join_run():
    result = _report() | RAY | ADDRESSES | {"config": {"lr": 1e-3, "sweep": {}}}
    row = rows.log_row("result", "t1", "npo", {"lr": 1e-3}, result)
    assert set(row) == {*rows.IDENTITY, *rows.SECTIONS}
    assert row["params"] == {"lr": 1e-3} and row["metrics"] == METRICS
    assert row["objectives"] == {KEYS[0]: -3.0, KEYS[1]: 0.8}
    assert row["run"] == RAY | RUN  # no config, no addresses, no second trial id
    end = rows.log_row("complete", "t1", "npo", {"lr": 1e-3}, time=1.8e9)
    assert end == {"event": "complete", "trial_id": "t1", "method": "npo"} | {
        "params": {"lr": 1e-3},
        "run": {"time": 1.8e9},
    }
    diverged = rows.report({"diverged": 1.0, "failure": "nan loss"})
    assert set(diverged) == {"run"}  # no objectives, never invented ones


def test_ray_flattens_a_report_into_the_names_the_searcher_reads():
    flat = flatten_dict(_report() | RAY)  # what the installed Ray hands searchers, schedulers
    assert flat[rows.ray_name("objectives", KEYS[1])] == 0.8
    assert flat[rows.ray_name("run", "epoch")] == 2 and flat["training_iteration"] == 2


def test_the_searcher_tells_optuna_from_a_flattened_sectioned_report(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = experiment.journal(experiment.journal_path(tmp_path, "npo"))
    modes = ["max", "max"]
    searcher = make_searcher(
        "npo", "tpe", 0, SpaceOptions("tiny"), KEYS, modes, storage, "npo", None
    )
    for tid in ("ok", "nan"):
        assert searcher.suggest(tid)
    searcher.on_trial_complete("ok", flatten_dict(_report() | RAY))
    diverged = rows.report({"diverged": 1.0, "failure": "loss became non-finite", "seeds": [0]})
    searcher.on_trial_complete("nan", flatten_dict(diverged | RAY))
    ok, nan = experiment.load_study(tmp_path, "npo").trials
    assert ok.state.name == "COMPLETE" and ok.values == [-3.0, 0.8]
    assert ok.constraints == {"utility_floor": -0.4} and ok.user_attrs["epoch"] == 2
    assert nan.state.name == "FAIL" and nan.user_attrs["failure"] == "loss became non-finite"
    assert experiment.load_study(tmp_path, "npo").metric_names == KEYS


class _Trial:
    def __init__(self, trial_id: str, status: str = "RUNNING") -> None:
        self.trial_id, self.status = trial_id, status


def test_the_progress_line_reads_a_sectioned_report(capsys):
    progress = Progress("npo", 2, (("log10_forget_quality", "max"), ("model_utility", "max")))
    a, b = _Trial("a"), _Trial("b")
    progress.on_trial_result(1, [a, b], a, _report())
    progress.on_trial_result(1, [a, b], b, rows.report({"diverged": 1.0, "failure": "nan"}))
    progress.on_trial_complete(1, [a, b], a)
    progress.on_trial_complete(1, [a, b], b)
    first, second = capsys.readouterr().err.splitlines()
    assert "finished: log10 FQ -3, utility 0.8 (epoch 2)" in first
    assert "best log10_forget_quality -3, best model_utility 0.8" in first
    assert "FAILED: nan" in second and "failed 1" in second
