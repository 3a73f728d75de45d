"""Warm start and extension (issue 17 item 4): the points `sweep --warm-start` takes from an
earlier study's front (order, one per Ray trial, clipped into this space, defaults for what the
earlier point lacks, the budget), the trials `resume --trials` counts, and, with real Ray sweeps
(slow), the earlier front enqueued first in the journal and `resume --trials` running exactly the
missing trials. The one-line refusals: tests/test_bad_inputs.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from fixtures_analysis.fake import write_experiment
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from sweeps.config import SweepConfig
from sweeps.experiment import load_study
from sweeps.search import EPOCH_OF, LOST
from sweeps.warm import _fitted, trials_run, warm_points
from unlearn_core.errors import UserError
from unlearn_core.source import Source


def config(other: Path, **kw) -> SweepConfig:
    return SweepConfig(
        method="npo", source=Source("tiny-tofu-small", "forget01"), warm_start=str(other), **kw
    )


def front_params(home: Path) -> list[dict]:
    """The earlier front's params, best first by the first objective (maximised here), once per
    Ray trial (several epochs of one trial can be on the front: they share its params)."""
    study = load_study(home, "npo")
    ordered = [t.params for t in sorted(study.best_trials, key=lambda t: (-t.values[0], t.number))]
    return [p for i, p in enumerate(ordered) if p not in ordered[:i]]


@pytest.fixture
def other(tmp_path) -> Path:
    """An earlier experiment: 8 completed NPO trials, seeded."""
    return write_experiment(tmp_path / "other", methods=("npo",), trials=8, outcomes={})


def test_the_points_are_the_earlier_front_best_first(other, tmp_path):
    points, notes = warm_points(config(other, trials=32), tmp_path / "new")
    expected = front_params(other)
    assert len(expected) >= 2 and notes == []
    assert points == expected  # same space, nothing fixed: the params as sampled, in front order
    assert load_study(other, "npo").directions[0] == optuna.study.StudyDirection.MAXIMIZE


def test_points_past_the_budget_are_left_out_with_one_line(other, tmp_path):
    expected = front_params(other)
    points, notes = warm_points(config(other, trials=2), tmp_path / "new")
    assert points == expected[:1]  # trial 0 runs the defaults: room for one
    assert len(notes) == 1 and f"{len(expected)} front points" in notes[0], notes


def test_values_outside_this_space_are_clipped_and_fixed_ones_dropped(other, tmp_path):
    cfg = config(other, space={"lr": "1e-4:2e-4:log"}, fixed={"warmup_epochs": 0.0, "epochs": 1})
    points, notes = warm_points(cfg, tmp_path / "new")
    expected = front_params(other)
    assert [p["lr"] for p in points] == [min(max(e["lr"], 1e-4), 2e-4) for e in expected]
    assert all("warmup_epochs" not in p and "epochs" not in p for p in points)
    clipped = [e for e in expected if not 1e-4 <= e["lr"] <= 2e-4]
    assert len(notes) == len(clipped) >= 1
    assert all("lr=" in n and "clipped to" in n and "0.0001..0.0002" in n for n in notes), notes


def test_what_the_earlier_point_lacks_takes_this_sweeps_reference_default(tmp_path):
    other = write_experiment(
        tmp_path / "other", methods=("npo",), trials=6, outcomes={}, fixed={"beta": 0.5}
    )
    cfg = config(other)
    points, _ = warm_points(cfg, tmp_path / "new")
    assert points and all(p["beta"] == cfg.defaults_point()["beta"] == 0.1 for p in points)
    first = cfg.defaults_point()  # the earlier defaults trial, fitted, is this one's trial 0
    expected = [q for q in front_params(other) if q | {"beta": 0.1} != first]
    assert [{k: v for k, v in p.items() if k != "beta"} for p in points] == expected


def test_a_ray_trial_with_several_epochs_on_the_front_is_enqueued_once(other, tmp_path):
    """Epoch points (sweeps/search.EPOCH_OF) stand for their Ray trial: its params, once."""
    study = load_study(other, "npo")
    told = [t for t in study.best_trials if EPOCH_OF not in t.user_attrs]
    best = max(told, key=lambda t: t.values[0])
    low = min(t.values[1] for t in study.best_trials)
    top = max(t.values[0] for t in study.best_trials)
    for epoch in (1, 2):  # two earlier epochs of the best trial, both on the front, ahead of it
        study.add_trial(
            optuna.trial.create_trial(
                params=best.params,
                distributions=best.distributions,
                values=[top + 3 - epoch, low - 0.3 + 0.1 * epoch],
                user_attrs={EPOCH_OF: best.user_attrs["ray_trial_id"], "epoch": epoch},
                constraints={"utility_floor": -1.0},
            )
        )
    on_front = [t for t in load_study(other, "npo").best_trials if t.user_attrs.get(EPOCH_OF)]
    assert (
        len([t for t in on_front if t.user_attrs[EPOCH_OF] == best.user_attrs["ray_trial_id"]]) >= 2
    )
    points, _ = warm_points(config(other), tmp_path / "new")
    assert points[0] == best.params  # the epochs count sampled, not the epoch evaluated
    assert points.count(best.params) == 1 and points == front_params(other)


def test_a_categorical_value_outside_the_choices_is_refused_in_one_line():
    dists = {"first_n": CategoricalDistribution((-1, 1, 2)), "lr": FloatDistribution(1e-4, 1e-3)}
    with pytest.raises(UserError, match=r"has first_n=7, not one of this sweep's choices"):
        _fitted({"first_n": 7, "lr": 5e-4}, 3, dists, {}, {}, [])
    notes: list[str] = []
    point = _fitted({"first_n": 2, "epochs": 9.0}, 3, dists | {"epochs": IntDistribution(1, 8)},
                    {"lr": 1e-3}, {}, notes)  # fmt: skip
    assert point == {"first_n": 2, "lr": 1e-3, "epochs": 8} and len(notes) == 1


def test_the_trials_run_count_skips_epoch_points_and_lost_ones(tmp_path):
    home = write_experiment(tmp_path / "exp", methods=("npo",), trials=9)  # one left RUNNING
    study = load_study(home, "npo")
    assert trials_run(study) == 9 and trials_run(None) == 0
    t = study.trials[0]
    study.add_trial(
        optuna.trial.create_trial(
            params=t.params,
            distributions=t.distributions,
            values=t.values,
            user_attrs={EPOCH_OF: "x"},
        )
    )
    lost = optuna.trial.create_trial(
        params=t.params,
        distributions=t.distributions,
        state=TrialState.FAIL,
        user_attrs={"failure": LOST + "Ray's state of it was gone"},
    )
    study.add_trial(lost)
    assert trials_run(load_study(home, "npo")) == 9


# --- real sweeps (slow) --------------------------------------------------------------------

SWEEP = [
    sys.executable,
    "-m",
    "unlearn_sweep",
    "sweep",
    "--method",
    "npo",
    "--benchmark",
    "tiny-tofu-small",
    "--split",
    "forget01",
    "--fix",
    "epochs=1",
    "--max-concurrent",
    "1",
]


def cli(*args: str) -> subprocess.CompletedProcess:
    run = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def ray_trials(home: Path) -> set[str]:
    """Ray trials that ended, from the results log (sweeps.callbacks.ResultsLog)."""
    rows = [json.loads(line) for line in (home / "results" / "npo.jsonl").open()]
    return {r["trial_id"] for r in rows if r["event"] == "complete"}


def budget(home: Path) -> list:
    return [t for t in load_study(home, "npo").trials if EPOCH_OF not in t.user_attrs]


@pytest.fixture(scope="module")
def warm_pair(tmp_path_factory, small_benchmark):
    """A finished 3-trial sweep, then one warm-started from it with room for its whole front
    and one sampled trial."""
    out = tmp_path_factory.mktemp("warm")
    cli(*SWEEP, "--trials", "3", "--output", str(out), "--name", "first")
    first = out / "first"
    defaults = json.loads((first / "unlearn_sweep.json").read_text())["defaults"]["npo"]
    expected = [p for p in front_params(first) if p != defaults]
    expected = [p for i, p in enumerate(expected) if p not in expected[:i]]
    trials = str(len(expected) + 2)
    run = cli(*SWEEP, "--trials", trials, "--output", str(out), "--name", "second",
              "--warm-start", str(first), "--seed", "1")  # fmt: skip
    return first, out / "second", expected, run


@pytest.mark.slow
def test_warm_start_enqueues_the_earlier_front_first(warm_pair):
    first, second, expected, _ = warm_pair
    trials = budget(second)
    assert len(trials) == len(expected) + 2 and len(ray_trials(second)) == len(trials)
    defaults = json.loads((second / "unlearn_sweep.json").read_text())["defaults"]["npo"]
    assert trials[0].number == 0 and trials[0].params == defaults
    warm = trials[1 : 1 + len(expected)]
    assert [t.number for t in warm] == list(range(1, 1 + len(expected)))
    assert [t.params for t in warm] == expected  # as sampled there, exactly
    assert trials[-1].params not in [*expected, defaults]  # the sampler's own
    manifest = json.loads((second / "unlearn_sweep.json").read_text())
    assert manifest["sweeps"][0]["warm_start"] == str(first)


@pytest.mark.slow
def test_resume_trials_adds_exactly_the_missing_trials(warm_pair):
    _, second, _, _ = warm_pair
    before, ray_before = budget(second), ray_trials(second)
    total = len(before) + 2
    cli(sys.executable, "-m", "unlearn_sweep", "resume", str(second), "--trials", str(total))
    after, ray_after = budget(second), ray_trials(second)
    assert len(after) == total and all(t.state == TrialState.COMPLETE for t in after)
    assert [t.params for t in after[: len(before)]] == [t.params for t in before]
    assert ray_before < ray_after and len(ray_after) == total
    manifest = json.loads((second / "unlearn_sweep.json").read_text())
    assert [s["trials"] for s in manifest["sweeps"]] == [total]
    # a plain resume afterwards restores the new Tuner's state: nothing is left to run
    cli(sys.executable, "-m", "unlearn_sweep", "resume", str(second))
    assert len(budget(second)) == total and ray_trials(second) == ray_after
    # without Ray's folder the journal says what is missing: one more trial, a new one
    shutil.rmtree(second / "ray")
    cli(sys.executable, "-m", "unlearn_sweep", "resume", str(second), "--trials", str(total + 1))
    last = budget(second)
    assert len(last) == total + 1 and last[-1].state == TrialState.COMPLETE
    assert len(ray_trials(second)) == total + 1
