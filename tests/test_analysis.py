"""Analysis: Pareto masks against hand cases and Optuna's best_trials, hypervolume against hand
cases and Optuna's own, the loader's statuses on a fake experiment in the sweep's exact format,
every plot and the report written, each export rule's pick on a hand-made table, the exported
file's fields, the open-unlearning overrides, and bad inputs (one line, exit 2, nothing written)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from fixtures_analysis.fake import TARGET, write_experiment
from optuna.distributions import FloatDistribution

from analysis import export, pareto
from analysis.load import load, metric_columns
from analysis.openunlearning import openunlearning_overrides
from analysis.params import SearchRange, importances, near_bounds
from analysis.summary import analyze, front_table
from unlearn_core.errors import UserError
from unlearn_sweep.cli import main


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    """Two methods x 9 trials: defaults, complete, diverged, failed, stopped, retried, running."""
    return write_experiment(tmp_path_factory.mktemp("exp") / "exp1", partial_last_line=True)


# --- Pareto masks -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "values, directions, expected",
    [
        ([[1, 3], [2, 2], [3, 1], [1, 1]], ("max", "max"), [1, 1, 1, 0]),
        ([[1, 3], [2, 2], [3, 1], [3, 3]], ("min", "min"), [1, 1, 1, 0]),
        ([[1, 3], [2, 2], [3, 1], [1, 1]], ("min", "min"), [0, 0, 0, 1]),
        ([[1, 3], [2, 2], [3, 1], [1, 1]], ("max", "min"), [0, 0, 1, 0]),
        ([[1, 1], [1, 1], [0, 0]], ("max", "max"), [1, 1, 0]),  # duplicates both stay
        ([[1, 1], [1, 2]], ("max", "max"), [0, 1]),  # weakly dominated: off
        ([[np.nan, 9], [1, 1], [np.inf, 0]], ("max", "max"), [0, 1, 0]),  # non-finite: off
        ([[5.0, 1, 1], [4, 2, 1], [4, 1, 1], [3, 3, 3]], ("max", "max", "min"), [1, 1, 0, 1]),
        ([[2.0, 2]], ("max", "max"), [1]),
    ],
)
def test_pareto_mask_hand_cases(values, directions, expected):
    mask = pareto.pareto_mask(np.array(values, dtype=float), directions)
    assert mask.tolist() == [bool(x) for x in expected]


@pytest.mark.parametrize("seed", range(6))
def test_pareto_mask_equals_optuna_best_trials(seed):
    rng = np.random.default_rng(seed)
    m = 2 + seed % 2
    directions = [("max", "min")[rng.integers(2)] for _ in range(m)]
    values = rng.integers(0, 6, size=(40, m)).astype(float)  # ties and duplicates on purpose
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=[d + "imize" for d in directions])
    for v in values:
        study.add_trial(
            optuna.trial.create_trial(
                values=list(v), params={"x": 0.0}, distributions={"x": FloatDistribution(0, 1)}
            )
        )
    ours = set(np.flatnonzero(pareto.pareto_mask(values, directions)))
    assert ours == {t.number for t in study.best_trials}


def test_front_per_series_and_across():
    df = pd.DataFrame(
        {
            "series": ["a", "a", "b", "b", "a"],
            "status": ["complete", "complete", "complete", "complete", "stopped"],
            "x": [1.0, 2.0, 0.5, 3.0, 9.0],
            "y": [2.0, 1.0, 0.5, 3.0, 9.0],
        }
    )
    assert pareto.front(df, ["x", "y"], ["max", "max"]).tolist() == [1, 1, 0, 1, 0]
    assert pareto.front(df, ["x", "y"], ["max", "max"], by=None).tolist() == [0, 0, 0, 1, 0]


# --- hypervolume --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "points, directions, ref, area",
    [
        ([[1, 3], [2, 2], [3, 1]], ("max", "max"), (0, 0), 3 + 2 + 1),
        ([[1, 3], [2, 2], [3, 1], [1, 1]], ("max", "max"), (0, 0), 6),  # dominated adds nothing
        ([[2, 2]], ("max", "max"), (1, 1), 1),
        ([[0.5, 5], [5, 0.5]], ("max", "max"), (1, 1), 0),  # not beyond the reference
        ([[1, 1], [2, 3]], ("min", "min"), (4, 4), 3 * 3 + 1 * 0),
        ([[1, 3], [1, 3]], ("max", "max"), (0, 0), 3),  # duplicates count once
        ([], ("max", "max"), (0, 0), 0),
    ],
)
def test_hypervolume_hand_cases(points, directions, ref, area):
    pts = np.array(points, dtype=float).reshape(-1, 2)
    assert pareto.hypervolume_2d(pts, directions, ref) == pytest.approx(area)


@pytest.mark.parametrize("seed", range(4))
def test_hypervolume_equals_optunas(seed):
    from optuna._hypervolume import compute_hypervolume

    pts = np.random.default_rng(seed).uniform(0, 1, size=(30, 2))
    ref = np.array([1.1, 1.1])
    expected = compute_hypervolume(pts, ref)  # minimisation
    assert pareto.hypervolume_2d(pts, ("min", "min"), ref) == pytest.approx(expected)


def test_fq_mu_hypervolume_clips_at_the_floor():
    # log10 FQ -30 is clipped to the floor -20 and adds no area; (-10, 0.5) adds 10 x 0.5
    assert pareto.fq_mu_hypervolume([-30.0, -10.0], [0.9, 0.5]) == pytest.approx(5.0)
    assert pareto.fq_mu_hypervolume([-10.0], [0.5], floor=-12) == pytest.approx(1.0)


def test_hypervolume_curve_counts_failed_trials_and_never_drops():
    df = pd.DataFrame(
        {
            "series": ["a"] * 4,
            "trial_index": [1, 2, 3, 3],
            "status": ["complete", "failed", "complete", "complete"],
            "log10_forget_quality": [-10.0, np.nan, -5.0, -2.0],
            "model_utility": [0.5, np.nan, 0.2, 0.1],
        }
    )
    curve = pareto.hypervolume_curve(df)
    assert curve["trials"].tolist() == [1, 2, 3]
    # widths from the floor -20: 10, 15, 18; at 3 trials 18 x 0.1 + 15 x 0.1 + 10 x 0.3 = 6.3
    assert curve["hypervolume"].tolist() == pytest.approx([5.0, 5.0, 6.3])


# --- loading ------------------------------------------------------------------------------------


def test_load_counts_every_trial_with_its_status(experiment):
    rows, (exp,) = load([experiment])
    npo = rows[rows["method"] == "npo"]
    per_trial = npo.drop_duplicates("trial_index").set_index("trial_index")["trial_status"]
    assert per_trial.to_dict() == {
        1: "complete",
        2: "complete",
        3: "diverged",
        4: "failed",
        5: "stopped",
        6: "complete",
        7: "stopped",  # ran to its end, its last epochs below the floor (lr 4.6e-3 sampled)
        8: "running",
        9: "complete",
    }
    assert npo["number"].tolist() == sorted(npo["number"].tolist())  # Optuna numbers attached
    failed = npo[npo["status"].isin(["failed", "diverged"])]
    assert len(failed) == 2 and failed["model_utility"].isna().all()
    assert failed["failure"].str.contains("out of memory|non-finite").all()
    stopped = npo[npo["trial_index"] == 5]
    assert stopped["status"].tolist() == ["complete", "stopped"]  # epoch 1 feasible, 2 not
    retried = npo[npo["trial_index"] == 6]  # epoch 1 written twice: the later one stands
    assert retried["epoch"].tolist() == [1, 2, 3, 4, 5, 6, 7] and retried["retries"].iloc[0] == 1
    assert npo[npo["is_default"]]["trial_index"].unique().tolist() == [1]
    assert {
        "p_lr",
        "p_beta",
        "log10_forget_quality",
        "privleak",
        "abs_privleak",
        "run_optimizer_steps",
        "run_wall_time_s",
        "run_timestamp",  # Ray's own bookkeeping, in the run section
        "seeds",
    } <= set(rows.columns)
    assert not any(c.startswith("run_") for c in metric_columns(rows))
    assert not {"run_config", "run_node_ip", "run_hostname", "run_trial_id"} & set(rows.columns)
    assert exp.target == TARGET


def test_the_studys_front_is_the_analysis_front(tmp_path):
    """Every evaluated epoch is a study trial (the asked one holds the last, EPOCH_OF points the
    rest), so the study's best_trials, which `status` prints, are the rows analyze puts on the
    front: same (trial, epoch) points, same values. The retried trial's repeated epoch is one
    point; the stopped and the failed trial's feasible epoch 1 one each. (A running trial's
    latest epoch joins the study when its next report or its end arrives: a finished sweep.)"""
    from sweeps.experiment import EPOCH_OF, load_study
    from sweeps.status import study_summary

    outcomes = {2: "diverged", 3: "failed", 4: "stopped", 5: "retried"}
    experiment = write_experiment(tmp_path / "exp", outcomes=outcomes)
    a = analyze([experiment])
    for method in ("npo", "grad_diff"):
        keys, _ = a.objectives[method]
        table = front_table(a, method)
        ours = {
            (r.trial_id, int(r.epoch)): [getattr(r, k) for k in keys] for r in table.itertuples()
        }
        study = load_study(experiment, method)
        theirs = {
            (
                t.user_attrs.get(EPOCH_OF, t.user_attrs.get("ray_trial_id")),
                t.user_attrs["epoch"],
            ): t.values
            for t in study.best_trials
        }
        assert ours == theirs and len(ours) >= 2
        epochs = [t for t in study.trials if EPOCH_OF in t.user_attrs]
        rows = a.rows[(a.rows["series"] == method) & a.rows["status"].isin(["complete", "stopped"])]
        last = rows.groupby("trial_id")["epoch"].transform("max")
        # a point per evaluated epoch but the last of a trial that was told (or still runs)
        told = rows["trial_status"].isin(["complete", "stopped"])
        assert len(epochs) == int((rows["epoch"] < last).sum() + (~told).sum())
    lines = study_summary(experiment)
    shown = [ln for ln in lines if ln.lstrip().startswith("trial")]
    assert len(shown) == sum(len(front_table(a, m)) for m in ("npo", "grad_diff"))


def test_a_new_run_field_is_never_a_metric(tmp_path):
    """Bookkeeping under `run` (a field this version has never heard of, or one Ray adds beside
    the sections) reaches the table as a run_ column, never the metrics or an export."""
    home = write_experiment(tmp_path / "exp", methods=("npo",), trials=4, outcomes={})
    path = home / "results" / "npo.jsonl"
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    for ev in lines:
        if ev["event"] == "result":
            ev["run"] |= {"gpu_peak_mem_mb": 812.5, "tokens_seen": 4096}
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    rows, (exp,) = load([home])
    assert {"run_gpu_peak_mem_mb", "run_tokens_seen"} <= set(rows.columns)
    names = metric_columns(rows)
    assert "forget_quality" in names and not {"gpu_peak_mem_mb", "tokens_seen"} & set(names)
    assert not any(c.startswith("run_") for c in names)
    (doc,) = export.select(exp, rows, export.Rule("knee"))
    assert "forget_quality" in doc["info"]["metrics"]
    assert not {"gpu_peak_mem_mb", "tokens_seen"} & set(doc["info"]["metrics"])


def test_analysis_never_imports_ray():
    code = (
        "import sys, unlearn_sweep.analyze, analysis.report, analysis.export, analysis.summary\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'ray')\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_near_bounds_and_importances_with_too_few_trials():
    front = pd.DataFrame(
        {
            "series": ["npo"] * 2,
            "trial_id": ["a", "b"],
            "p_lr": [1.1e-4, 7e-4],
            "p_gamma": [1.0, 1.95],
        }
    )
    ranges = {"lr": SearchRange(1e-4, 5e-3, log=True), "gamma": SearchRange(0.5, 2.0, log=False)}
    flags = near_bounds(front, ranges)
    assert flags[["trial_id", "param", "bound"]].values.tolist() == [
        ["a", "lr", "low"],
        ["b", "gamma", "high"],
    ]
    study = optuna.create_study(directions=["maximize", "maximize"])
    assert importances(study, ["a", "b"], ["max", "max"]).note.startswith("0 complete")


# --- analyze: plots and report ------------------------------------------------------------------


def test_analyze_writes_every_plot_and_the_report(experiment, capsys):
    assert main(["analyze", str(experiment)]) == 0
    out = capsys.readouterr().out
    assert "npo:" in out and "point(s) on the Pareto front" in out
    plots = experiment / "analysis"
    for stem in ("pareto", "hypervolume", "params-npo", "params-grad_diff", "importance"):
        assert (plots / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", stem
        page = (plots / f"{stem}.html").read_text()
        assert 'src="plotly.min.js"' in page, stem
    assert (plots / "plotly.min.js").stat().st_size > 1_000_000  # offline: no CDN
    assert "lr = " in (plots / "pareto.html").read_text()  # hover shows hyperparameters
    md = (experiment / "report.md").read_text()
    for text in (
        "## Sweep settings",
        "| npo | 9 | 4 | 2 | 1 | 1 | 1 |",
        "out of memory",
        "![pareto](analysis/pareto.png)",
        "### grad_diff",
        "log10 forget quality -20",
    ):
        assert text in md, text
    assert "<iframe src='analysis/pareto.html'" in (experiment / "report.html").read_text()
    assert not list(experiment.rglob("*.tmp"))


def test_analyze_compares_folders_side_by_side(tmp_path, capsys):
    tpe = write_experiment(tmp_path / "tpe", methods=("npo",), trials=4, outcomes={})
    grid = write_experiment(
        tmp_path / "grid",
        methods=("npo",),
        trials=4,
        seed=3,
        sampler="grid",
        outcomes={1: "crashed"},
    )
    assert main(["analyze", str(tpe), str(grid)]) == 0
    md = (tpe / "comparison" / "report.md").read_text()
    assert "tpe/npo" in md and "grid/npo" in md and "## Front across series" in md
    assert "| grid/npo | 4 | 2 | 1 | 0 | 1 | 0 |" in md
    assert (tpe / "comparison" / "analysis" / "pareto.png").is_file()
    assert (tpe / "report.md").is_file() and (grid / "report.md").is_file()


# --- export rules on a hand-made table ----------------------------------------------------------

# front A..D, E dominated, F better than all but below the utility floor (stopped: never chosen)
TABLE = pd.DataFrame(
    {
        "trial_id": list("ABCDEF"),
        "number": range(6),
        "trial_index": range(1, 7),
        "epoch": [1, 2, 3, 4, 5, 6],
        "method": "npo",
        "status": ["complete"] * 5 + ["stopped"],
        "log10_forget_quality": [-10.0, -3.0, -1.0, -0.5, -5.0, 0.0],
        "model_utility": [0.6, 0.55, 0.3, 0.1, 0.5, 0.9],
    }
)
TABLE["forget_quality"] = 10.0 ** TABLE["log10_forget_quality"]
KEYS, DIRS = ["log10_forget_quality", "model_utility"], ["max", "max"]


@pytest.mark.parametrize(
    "rule, picked",
    [
        # normalised over the front: A (0, 1) d=1; B (0.737, 0.9) d=0.28; C (0.947, 0.4) d=0.6
        (export.Rule("knee"), "B"),
        (export.Rule("max-forget", min_utility_frac=0.9), "B"),  # utility >= 0.54: A, B
        (export.Rule("max-forget", min_utility_frac=0.95), "A"),  # utility >= 0.57: A
        (export.Rule("max-utility", min_forget_quality=0.05), "C"),  # FQ >= 0.05: C, D
        (export.Rule("max-utility", min_forget_quality=0.2), "D"),
        (export.Rule("weighted", weights=(1.0, 0.0)), "D"),
        (export.Rule("weighted", weights=(0.0, 1.0)), "A"),
        (export.Rule("weighted"), "B"),  # n sums: A 1, B 1.64, C 1.35, D 1
    ],
)
def test_each_rule_picks_the_expected_point(rule, picked):
    row = export.choose(TABLE, KEYS, DIRS, rule, target_utility=0.6)
    assert row["trial_id"] == picked


def test_ties_go_to_the_earlier_trial():
    table = pd.concat([TABLE, TABLE.iloc[[1]].assign(trial_id="B2", trial_index=9)])
    assert export.choose(table, KEYS, DIRS, export.Rule("knee"), 0.6)["trial_id"] == "B"


@pytest.mark.parametrize(
    "rule, message",
    [
        (export.Rule("max-forget", min_utility_frac=1.2), "closest: trial A epoch 1"),
        (export.Rule("max-utility", min_forget_quality=0.9), "closest: trial D epoch 4"),
    ],
)
def test_unmet_constraint_names_the_closest_trial(rule, message):
    with pytest.raises(UserError, match=message):
        export.choose(TABLE, KEYS, DIRS, rule, target_utility=0.6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"name": "pareto"}, "unknown rule 'pareto'"),
        ({"name": "weighted", "weights": (1.0, -1.0)}, "--weights must be"),
        ({"name": "max-forget", "min_utility_frac": 0.0}, "--min-utility-frac"),
    ],
)
def test_bad_rules_are_refused(kwargs, message):
    with pytest.raises(UserError, match=message):
        export.Rule(**kwargs)
    with pytest.raises(UserError, match="3 weights for 2 objectives"):
        export.choose(TABLE, KEYS, DIRS, export.Rule("weighted", weights=(1, 1, 1)), 0.6)


# --- export files -------------------------------------------------------------------------------

JOB_FIELDS = {"method", "hparams", "source", "train", "eval", "trust_remote_code", "reference"}
INFO_FIELDS = {"trial", "epoch", "objectives", "metrics", "rule", "optimizer_steps", "version"}


def test_export_writes_the_job_and_an_info_section(experiment, capsys):
    from unlearn_core.job import job_from_dict

    assert main(["export", str(experiment), "--rule", "max-forget", "--openunlearning"]) == 0
    out = capsys.readouterr().out
    assert "trainer=NPO" in out and "trainer.method_args.beta=" in out
    ou = yaml.safe_load((experiment / "best" / "npo.openunlearning.yaml").read_text())
    assert (
        ou["defaults"][-1] == {"override /trainer": "NPO"}
        and "beta" in ou["trainer"]["method_args"]
    )
    for method in ("npo", "grad_diff"):
        doc = yaml.safe_load((experiment / "best" / f"{method}.yaml").read_text())
        assert doc == json.loads((experiment / "best" / f"{method}.json").read_text())
        assert set(doc) == {"job", "info"} and set(doc["job"]) == JOB_FIELDS
        assert set(doc["info"]) == INFO_FIELDS
        job = job_from_dict(doc["job"])  # what `unlearn --config` runs
        assert job.method == method and job.reference is None
        assert doc["info"]["objectives"]["model_utility"] >= 0.9 * TARGET["model_utility"]
        assert doc["info"]["rule"] == {"name": "max-forget", "min_utility_frac": 0.9}
        assert "host" not in json.dumps(doc) and "node" not in json.dumps(doc)
        stop = job.train.stop_after
        assert (stop is None) == (doc["info"]["epoch"] == job.train.epochs)
        assert stop is None or 1 <= stop < job.train.epochs
    assert set(
        yaml.safe_load((experiment / "best" / "npo.yaml").read_text())["job"]["hparams"]
    ) == {
        "beta",
        "alpha",
        "gamma",
    }


def test_record_keeps_the_trial_schedule_and_stops_early(experiment):
    rows, (exp,) = load([experiment])
    row = rows[(rows["method"] == "npo") & (rows["trial_index"] == 6) & (rows["epoch"] == 2)]
    doc = export.record(exp, row.iloc[0], export.Rule("knee"), KEYS, ["forget_quality"])
    train = doc["job"]["train"]
    assert train["epochs"] == 7 and train["stop_after"] == 2 and doc["info"]["epoch"] == 2
    assert isinstance(train["epochs"], int) and doc["info"]["rule"] == {"name": "knee"}
    assert doc["info"]["optimizer_steps"] == 3 * 2  # the fake sweep's 3 steps per epoch
    text = openunlearning_overrides(doc)
    for part in (
        "trainer=NPO",
        "forget_split=forget10",
        "retain_split=retain90",
        f"trainer.args.learning_rate={train['lr']!r}",
        "trainer.args.num_train_epochs=7",
        "trainer.args.save_strategy=epoch",
        "trainer.args.per_device_train_batch_size=8",
    ):
        assert part in text, part


# --- bad input: one line, exit 2, nothing written -----------------------------------------------


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_not_an_experiment_folder(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    assert main(["analyze", str(tmp_path / "x")]) == 2
    assert "not an unlearn-sweep experiment" in _one_line_error(capsys)
    assert main(["export", str(tmp_path / "nope"), "--rule", "knee"]) == 2
    assert "is not a folder" in _one_line_error(capsys)
    assert list((tmp_path / "x").iterdir()) == []


def test_zero_complete_trials(tmp_path, capsys):
    home = write_experiment(
        tmp_path / "dead",
        methods=("npo",),
        trials=3,
        outcomes={0: "crashed", 1: "diverged", 2: "crashed"},
    )
    before = sorted(p.name for p in home.rglob("*"))
    assert main(["analyze", str(home)]) == 2
    assert "no complete trial" in _one_line_error(capsys)
    assert main(["export", str(home), "--rule", "knee"]) == 2
    assert "no complete trial" in _one_line_error(capsys)
    assert sorted(p.name for p in home.rglob("*")) == before


def test_unmet_constraint_and_bad_options_write_nothing(experiment, tmp_path, capsys):
    home = write_experiment(tmp_path / "e", methods=("npo", "grad_diff"), trials=4, outcomes={})
    cases = [
        (["--rule", "max-forget", "--min-utility-frac", "1.4"], "closest: trial"),
        (["--rule", "nope"], "unknown rule"),
        (["--rule", "weighted", "--weights", "1,x"], "--weights expects"),
        (["--rule", "weighted", "--weights", "1,2,3"], "3 weights for 2 objectives"),
    ]
    for args, message in cases:
        assert main(["export", str(home), *args]) == 2, args
        assert message in _one_line_error(capsys)
    assert not (home / "best").exists()


def test_unknown_objective_in_the_manifest(tmp_path, capsys):
    home = write_experiment(tmp_path / "e", methods=("npo",), trials=2, outcomes={})
    manifest = json.loads((home / "unlearn_sweep.json").read_text())
    manifest["sweeps"][0]["objectives"] = ["forget_quality", "happiness"]
    (home / "unlearn_sweep.json").write_text(json.dumps(manifest))
    assert main(["analyze", str(home)]) == 2
    assert "unknown objective 'happiness'" in _one_line_error(capsys)
    assert not (home / "report.md").exists()
