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
    train = {"train_loss": 2.5, "lr": 1e-5, "tokens_per_s": 1234.4, "peak_memory_gib": 1.5}
    progress.on_trial_result(1, [a, b], a, _report(**train))
    progress.on_trial_result(1, [a, b], b, rows.report({"diverged": 1.0, "failure": "nan"}))
    progress.on_trial_complete(1, [a, b], a)
    progress.on_trial_complete(1, [a, b], b)
    epoch, first, second = capsys.readouterr().err.splitlines()
    # a long trial shows each evaluated epoch: objectives, and how its training goes
    assert epoch == (
        "[npo] trial a epoch 2: log10 FQ -3, utility 0.8 | "
        "loss 2.5, lr 1.00e-05, 1234 tokens/s, peak 1.50 GiB"
    )
    assert "finished: log10 FQ -3, utility 0.8 (epoch 2)" in first
    assert "best log10_forget_quality -3, best model_utility 0.8" in first
    assert "FAILED: nan" in second and "failed 1" in second


def _epoch(epoch: int, fq: float, mu: float, floor: float = 0.4) -> dict:
    run = RUN | {"epoch": epoch, "utility_violation": floor - mu}
    return flatten_dict(rows.report(run, {KEYS[0]: fq, KEYS[1]: mu}, METRICS) | RAY)


def test_the_study_learns_every_evaluated_epoch_once_and_its_front_is_the_rows_front(tmp_path):
    """Ray tells a multi-objective searcher only a trial's last result; every earlier epoch
    becomes a study trial of its own (EPOCH_OF), once even when a resumed trial reports it
    again, feasible or not by its own utility, so best_trials is the front of all epoch rows."""
    from analysis.pareto import pareto_mask

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = experiment.journal(experiment.journal_path(tmp_path, "npo"))
    searcher = make_searcher(
        "npo", "tpe", 0, SpaceOptions("tiny"), KEYS, ["max"] * 2, storage, "npo", None
    )
    reports = {  # trial -> the epochs it reports, in order
        "a": [
            _epoch(1, -9.0, 0.95),
            _epoch(2, -4.0, 0.85),
            _epoch(2, -4.0, 0.85),
            _epoch(3, -2.0, 0.5),
        ],
        # cut by the utility floor at epoch 2: Ray hands its searcher that report only at the end
        "b": [_epoch(1, -1.0, 0.6), _epoch(2, -0.5, 0.1)],
        "c": [_epoch(1, -3.0, 0.7)],  # errors in epoch 2: its epoch 1 still counts
    }
    for tid in reports:
        assert searcher.suggest(tid)
    for tid, results in reports.items():
        for r in results[:-1] if tid == "b" else results:
            searcher.on_trial_result(tid, r)
    searcher.on_trial_complete("a", reports["a"][-1])
    searcher.on_trial_complete("b", reports["b"][-1])
    searcher.on_trial_complete("c", None, error=True)
    study = experiment.load_study(tmp_path, "npo")
    seen = {
        (
            t.user_attrs.get(experiment.EPOCH_OF) or t.user_attrs["ray_trial_id"],
            t.user_attrs["epoch"],
        ): t
        for t in study.trials
        if t.state.name == "COMPLETE"
    }
    rows_ = {
        (tid, int(r[rows.ray_name("run", "epoch")])): r for tid, rs in reports.items() for r in rs
    }
    assert sorted(seen) == sorted(rows_) and len(study.trials) == 3 + 4  # 3 asked + 4 earlier
    for key, t in seen.items():
        assert t.values == [rows_[key][f"objectives/{k}"] for k in KEYS]
        assert t.constraints == {"utility_floor": rows_[key]["run/utility_violation"]}
    points = [t for t in study.trials if experiment.is_epoch_point(t)]
    asked = {t.user_attrs["ray_trial_id"]: t for t in study.trials if t not in points}
    assert all(t.params == asked[t.user_attrs[experiment.EPOCH_OF]].params for t in points)
    assert all(t.user_attrs["stop_after"] == t.user_attrs["epoch"] for t in points)
    assert {t.user_attrs[experiment.EPOCH_OF] for t in points} == {"a", "b", "c"}
    # the front: feasible rows only (b's epoch 2 is below the floor), as analysis computes it
    keys = [k for k, r in rows_.items() if r["run/utility_violation"] <= 0]
    values = [[rows_[k][f"objectives/{o}"] for o in KEYS] for k in keys]
    front = {k for k, on in zip(keys, pareto_mask(values, ["max", "max"]), strict=True) if on}
    best = {k for k, t in seen.items() if t.number in {b.number for b in study.best_trials}}
    # trial a was told its epoch 3, off the front: its epochs 1 and 2 are on it
    assert best == front, (best, front)
    assert front == {("a", 1), ("a", 2), ("b", 1), ("c", 1)}
