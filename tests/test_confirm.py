"""`confirm` without Ray (fake experiment folders, fake fresh-seed runs): the interval against a
hand-computed one, the fresh-seed scheme, a record that keeps earlier points and seeds, the knee
points it picks (export's order), the analysis drawing the intervals (plot data on both axes,
matplotlib and plotly) and the report's confirmed table, export choosing with confirmed means,
stop_after reaching the trial's job, and bad input (one line, exit 2, nothing written). The real
Ray run: tests/test_confirm_ray.py."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
from fixtures_analysis.fake import write_experiment
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from analysis import confirmed, export, plots
from analysis.load import load, open_experiment
from analysis.summary import analyze
from sweeps import confirm as cf
from sweeps.config import SweepConfig, sweep_from_dict
from sweeps.experiment import confirmed_path
from sweeps.search import EPOCH_OF
from unlearn_core.errors import UserError
from unlearn_core.source import Source
from unlearn_sweep.cli import main

KEYS = ["log10_forget_quality", "model_utility"]


@pytest.fixture
def home(tmp_path):
    """One method (npo), 6 trials, every one complete."""
    return write_experiment(tmp_path / "exp", methods=("npo",), trials=6, outcomes={})


def fake_runs(point: confirmed.Point, shift: dict[str, list[float]]) -> list:
    """One run per fresh seed 1000.. with the sweep's objectives plus `shift[key][i]`."""
    n = len(next(iter(shift.values())))
    runs = []
    for i in range(n):
        objectives = {
            k: v + shift.get(k, [0.0] * n)[i] for k, v in point.sweep["objectives"].items()
        }
        metrics = {"forget_quality": 10 ** objectives["log10_forget_quality"]}
        runs.append((point, {"seed": 1000 + i, "objectives": objectives, "metrics": metrics}))
    return runs


def write_record(home, points, runs) -> dict:
    record = confirmed.merged(confirmed.read(home), "npo", points, runs)
    confirmed_path(home).write_text(json.dumps(record))
    return record


def knee_points(home, top=2) -> list[confirmed.Point]:
    rows, (exp,) = load([home])
    return cf._chosen(exp, rows, ["npo"], top)["npo"]


def test_interval_is_the_student_t_one_by_hand():
    s = confirmed.stats([1.0, 2.0, 3.0], 5.0)
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2) = 4.3027, std 1
    assert s["sweep"] == 5.0 and s["mean"] == 2.0 and s["std"] == 1.0 and s["n"] == 3
    assert s["low"] == pytest.approx(2 - half) and s["high"] == pytest.approx(2 + half)
    one = confirmed.stats([4.0, float("nan")], 1.0)  # non-finite runs are not counted
    assert one == {"sweep": 1.0, "mean": 4.0, "std": None, "n": 1, "low": None, "high": None}


def test_fresh_seeds_are_never_the_sweeps():
    cfg = SweepConfig("npo", Source("tiny-tofu-small", "forget01"), seed=7, seeds=3)
    swept = {cfg.seed + i for i in range(cfg.seeds)}
    assert cf.fresh_seeds(cfg, 3) == [1007, 1008, 1009] and not swept & set(cf.fresh_seeds(cfg, 9))
    assert cf.fresh_seeds(cfg, 5)[:3] == cf.fresh_seeds(cfg, 3)  # more seeds: the same first ones


def test_confirm_picks_the_knee_points_in_exports_order(home):
    rows, (exp,) = load([home])
    pts = knee_points(home, top=3)
    npo = rows[rows["method"] == "npo"]
    ranked = export.knee_order(npo, KEYS, ["max", "max"])
    assert [(p.trial, p.epoch) for p in pts] == list(
        zip(ranked["trial_id"][:3], ranked["epoch"][:3].astype(int), strict=True)
    )
    assert export.knee_order(npo.iloc[0:0], KEYS, ["max", "max"]).empty  # nothing feasible
    knee = export.choose(npo, KEYS, ["max", "max"], export.Rule("knee"), 0.85)
    assert (pts[0].trial, pts[0].epoch) == (knee["trial_id"], int(knee["epoch"]))
    assert pts[0].why == ("knee #1",) and set(pts[0].params) >= {"lr", "beta", "epochs"}
    # an exported point not among the knee points is confirmed too
    far = ranked.iloc[-1]
    (home / "best").mkdir()
    (home / "best" / "npo.json").write_text(
        json.dumps({"job": {}, "info": {"trial": far["trial_id"], "epoch": int(far["epoch"])}})
    )
    pts = cf._chosen(exp, rows, ["npo"], 1)["npo"]
    assert [p.why for p in pts] == [("knee #1",), ("exported",)]
    assert (pts[1].trial, pts[1].epoch) == (far["trial_id"], int(far["epoch"]))


def test_record_has_mean_std_interval_and_keeps_earlier_confirmations(home):
    a, b = knee_points(home)
    write_record(home, [a], fake_runs(a, {"log10_forget_quality": [-1.0, 0.0, 1.0]}))
    doc = write_record(home, [b], fake_runs(b, {"model_utility": [0.01, 0.03]}))
    first, second = doc["methods"]["npo"]["points"]  # a's confirmation is kept
    fq = first["objectives"]["log10_forget_quality"]
    sweep = a.sweep["objectives"]["log10_forget_quality"]
    assert fq["sweep"] == sweep and fq["n"] == 3 and fq["std"] == pytest.approx(1.0)
    assert fq["mean"] == pytest.approx(sweep)
    assert fq["high"] - fq["mean"] == pytest.approx(4.302652729911275 / math.sqrt(3))
    mu = second["objectives"]["model_utility"]
    assert mu["mean"] == pytest.approx(b.sweep["objectives"]["model_utility"] + 0.02)
    assert mu["n"] == 2 and first["metrics"]["forget_quality"]["n"] == 3
    assert confirmed.seen(doc, "npo", a) == {1000, 1001, 1002} and confirmed.seen(
        doc, "npo", b
    ) == {1000, 1001}
    # a third seed for b joins its two; a's runs are untouched
    extra = [(b, {"seed": 1002, "objectives": dict(b.sweep["objectives"]), "metrics": {}})]
    doc = write_record(home, [b], extra)
    assert [r["seed"] for r in doc["methods"]["npo"]["points"][1]["runs"]] == [1000, 1001, 1002]
    assert doc["methods"]["npo"]["points"][0] == first
    table = confirmed.table(home, home.name)
    assert table["n"].tolist() == [3, 3] and {
        "log10_forget_quality_low",
        "model_utility_high",
    } <= set(table.columns)


def test_analysis_draws_the_intervals_on_both_axes(home, capsys):
    a_pt, b_pt = knee_points(home)
    shift = {"log10_forget_quality": [-1.0, 0.0, 1.0], "model_utility": [-0.02, 0.0, 0.01]}
    write_record(home, [a_pt], fake_runs(a_pt, shift))
    a = analyze([home])
    assert a.confirmed[["trial_id", "series"]].values.tolist() == [[a_pt.trial, "npo"]]
    c = a.confirmed.iloc[0]
    keys, dirs = a.shared
    fig, pfig = plots.pareto_figures(a.rows, a.on_plot_front, a.refs, keys, dirs, "t", a.confirmed)
    (trace,) = [t for t in pfig.data if "confirmed" in (t.name or "")]
    x_mean = 10 ** c["log10_forget_quality_mean"]  # the p-value on the log axis
    assert trace.x[0] == pytest.approx(x_mean) and trace.y[0] == pytest.approx(
        c["model_utility_mean"]
    )
    assert trace.error_x.array[0] == pytest.approx(10 ** c["log10_forget_quality_high"] - x_mean)
    assert trace.error_x.arrayminus[0] == pytest.approx(
        x_mean - 10 ** c["log10_forget_quality_low"]
    )
    assert trace.error_y.array[0] == pytest.approx(
        c["model_utility_high"] - c["model_utility_mean"]
    )
    assert trace.error_x.array[0] > 0 and trace.error_y.array[0] > 0
    (bars,) = [k for k in fig.axes[0].containers if type(k).__name__ == "ErrorbarContainer"]
    assert bars.has_xerr and bars.has_yerr
    assert bars.lines[0].get_xdata()[0] == pytest.approx(x_mean)
    # the report's confirmed table: the sweep value beside the fresh-seed mean and interval
    assert main(["analyze", str(home)]) == 0
    report = (home / "report.md").read_text()
    assert "## Confirmed on fresh seeds" in report
    (line,) = [
        ln for ln in report.splitlines() if ln.startswith(f"| {a_pt.trial} |") and "+-" in ln
    ]
    half = (c["log10_forget_quality_high"] - c["log10_forget_quality_low"]) / 2
    assert f"{c['log10_forget_quality_mean']:.4g} +- {half:.3g}" in line
    assert f"| {c['log10_forget_quality_sweep']:.4g} |" in line and "| 3 |" in line
    assert "error_x" in (home / "analysis" / "pareto.html").read_text()


def test_export_chooses_with_confirmed_means(home, capsys):
    rows, (exp,) = load([home])
    npo = rows[rows["method"] == "npo"]
    (before,) = export.select(exp, rows, export.Rule("knee"))
    knee = knee_points(home, top=1)[0]
    assert (before["info"]["trial"], before["info"]["epoch"]) == (knee.trial, knee.epoch)
    # the knee point was the lucky seed: on fresh seeds it forgets 10 orders of magnitude worse
    write_record(home, [knee], fake_runs(knee, {"log10_forget_quality": [-10.0, -10.5, -9.5]}))
    at = (npo["trial_id"] == knee.trial) & (npo["epoch"] == knee.epoch)
    worse = npo.copy()
    worse.loc[at, "log10_forget_quality"] -= 10.0
    expected = export.choose(worse, KEYS, ["max", "max"], export.Rule("knee"), 0.85)
    assert (expected["trial_id"], int(expected["epoch"])) != (knee.trial, knee.epoch)
    assert main(["export", str(home), "--rule", "knee"]) == 0
    out = capsys.readouterr().out
    assert "chosen with the fresh-seed means of 1 confirmed point(s)" in out
    assert "this point was not confirmed" in out
    doc = json.loads((home / "best" / "npo.json").read_text())
    assert (doc["info"]["trial"], doc["info"]["epoch"]) == (
        expected["trial_id"],
        int(expected["epoch"]),
    )
    assert doc["info"]["confirmed"] == {"means_used": 1, "file": "confirmed.json", "point": None}
    # the sweep's values stay the record's objectives
    assert doc["info"]["objectives"]["model_utility"] == float(expected["model_utility"])


def test_export_of_a_confirmed_point_records_its_interval(home, capsys):
    knee = knee_points(home, top=1)[0]
    write_record(home, [knee], fake_runs(knee, {"model_utility": [0.0, 0.01, -0.01]}))
    assert main(["export", str(home), "--rule", "knee"]) == 0
    assert "this point on 3 fresh seeds: log10_forget_quality" in capsys.readouterr().out
    info = json.loads((home / "best" / "npo.json").read_text())["info"]
    assert info["trial"] == knee.trial and info["confirmed"]["point"]["seeds"] == [1000, 1001, 1002]
    mu = info["confirmed"]["point"]["objectives"]["model_utility"]
    assert mu["mean"] == pytest.approx(knee.sweep["objectives"]["model_utility"])
    assert mu["low"] < mu["mean"] < mu["high"] and mu["std"] == pytest.approx(0.01)


def test_a_confirm_trial_stops_after_the_points_epoch(home):
    from sweeps.trainable import TrialSpec

    cfg = sweep_from_dict(open_experiment(home).sweeps["npo"])
    params = {"lr": 1e-3, "warmup_epochs": 0.0, "weight_decay": 0.0, "epochs": 4, "beta": 0.1}
    ref = {"split": "forget01", "forget_truth_ratio": [0.5], "mia_min_k": 0.5}
    spec = TrialSpec(cfg, params, ref, 0.4, str(home), stop_after=2)
    assert spec.job(1000).train.stop_after == 2 and spec.job(1000).train.epochs == 4
    assert spec.job(1000).train.seed == 1000
    last = TrialSpec(cfg, params, ref, 0.4, str(home), stop_after=4)
    assert last.job(0).train.stop_after is None  # the whole schedule, as the sweep ran it
    with pytest.raises(UserError, match="confirm must be >= 0"):
        SweepConfig("npo", Source("tiny-tofu-small", "forget01"), confirm=-1)


def test_explicit_points_are_checked(home):
    with pytest.raises(UserError, match="no evaluated epoch 9 of npo trial nope"):
        cf.confirm(home, points=[{"method": "npo", "trial": "nope", "epoch": 9}])
    with pytest.raises(UserError, match="a point is"):
        cf.confirm(home, points=[{"trial": "x"}])
    assert not confirmed_path(home).exists()


# --- bad input: one line, exit 2, nothing written -----------------------------------------------


def snapshot(folder) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else ""
        for p in sorted(folder.rglob("*"))
    }


def _no_completed(tmp_path):
    """A study whose trials all crashed or diverged."""
    outcomes = {0: "crashed", 1: "diverged", 2: "crashed"}
    return write_experiment(tmp_path / "dead", methods=("npo",), trials=3, outcomes=outcomes)


def _epoch_points_only(tmp_path):
    """A study whose only completed trial records an earlier epoch (EPOCH_OF), not a trial."""
    import optuna
    from optuna.distributions import FloatDistribution

    home = _no_completed(tmp_path)
    storage = JournalStorage(JournalFileBackend(str(home / "optuna" / "npo.journal")))
    study = optuna.load_study(study_name="npo", storage=storage)
    point = optuna.trial.create_trial(
        values=[-3.0, 0.8],
        params={"lr": 1e-3},
        distributions={"lr": FloatDistribution(1e-4, 1e-2, log=True)},
        user_attrs={EPOCH_OF: "0a000_00000"},
    )
    study.add_trial(point)
    return home


@pytest.mark.parametrize(
    "make, args, message",
    [
        (lambda t: t / "plain", [], "not an unlearn-sweep experiment"),
        (lambda t: t / "nothing-here", [], "is not a folder"),
        (
            lambda t: write_experiment(t / "e", methods=("npo",), trials=2, outcomes={}),
            ["--top", "0"],
            "--top and --seeds must be >= 1",
        ),
        (
            lambda t: write_experiment(t / "e", methods=("npo",), trials=2, outcomes={}),
            ["--seeds", "0"],
            "--top and --seeds must be >= 1",
        ),
        (_no_completed, [], "no completed trial yet"),
        (_epoch_points_only, [], "no completed trial yet"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, make, args, message):
    target = make(tmp_path)
    if target.name == "plain":
        target.mkdir()
        (target / "notes.txt").write_text("hello")
    before = snapshot(tmp_path)
    assert main(["confirm", str(target), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err, err
    assert snapshot(tmp_path) == before


def test_means_leave_unconfirmed_rows_alone(home):
    rows, _ = load([home])
    table = confirmed.table(home, home.name)  # no record yet: empty
    out = confirmed.means(rows, table, KEYS)
    assert not out["confirmed"].any()
    assert np.array_equal(out[KEYS].to_numpy(), rows[KEYS].to_numpy(), equal_nan=True)


def test_a_point_given_twice_and_a_seed_run_twice_count_once(home):
    """bench_confirm gave confirm the same point for two budgets: it ran each seed twice and the
    record counted 6 runs of 3 seeds. A point given twice is planned once, and the record keeps
    one run per seed whatever it is handed."""
    rows, (exp,) = load([home])
    row = rows[rows["status"] == "complete"].iloc[0]
    given = {"method": "npo", "trial": row["trial_id"], "epoch": int(row["epoch"])}
    (point,) = cf._given(exp, rows, [given, dict(given)])["npo"]
    runs = fake_runs(point, {"log10_forget_quality": [0.0, -1.0, -2.0]})
    record = write_record(home, [point, point], runs + runs)
    (entry,) = record["methods"]["npo"]["points"]
    assert [r["seed"] for r in entry["runs"]] == [1000, 1001, 1002]
    assert entry["objectives"]["log10_forget_quality"]["n"] == 3
