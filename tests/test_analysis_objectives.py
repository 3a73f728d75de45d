"""Analysis of sweeps whose objectives are not TOFU's: small fake experiments in the sweep's
format on tiny-muse (forget_verbmem_ROUGE min, model_utility max) and tiny-dusk
(forget_specific_ROUGE min, shared_ROUGE max) with hand-made values. Covers the front masks, the
hypervolume (hand-computed, per objective reference point, 1-D and 3-D against Optuna's), every
plot and the report, every export rule's pick, one- and three-objective sweeps, and folders whose
objectives or benchmarks differ (one line, exit 2, nothing written)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from fixtures_analysis.fake import _ray_fields, defaults_point
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from analysis import pareto
from analysis.summary import analyze
from search_spaces import SPACES
from search_spaces._common import SpaceOptions
from sweeps import rows
from sweeps.config import SweepConfig, to_dict
from sweeps.objectives import OBJECTIVES, get_objectives, objective_values
from unlearn_core.source import Source
from unlearn_sweep.cli import main

# --- a fake document-benchmark experiment -------------------------------------------------------

# trial id -> (forget score, retain score, status); the first trial runs the reference defaults
MUSE_TRIALS = {  # (forget_verbmem_ROUGE, model_utility)
    "A": (0.80, 0.95, "complete"),
    "B": (0.30, 0.91, "complete"),
    "C": (0.10, 0.60, "complete"),
    "D": (0.05, 0.20, "complete"),
    "E": (0.40, 0.85, "complete"),  # dominated by B
    "F": (0.01, 0.05, "stopped"),  # below the utility floor: never on a front, never exported
}
MUSE_TARGET = {
    "forget_verbmem_ROUGE": 0.82,
    "forget_knowmem_ROUGE": 1.0,
    "retain_knowmem_ROUGE": 1.0,
    "model_utility": 1.0,
    "privleak": -99.9,
    "extraction_strength": 1.0,
}
MUSE_RETAIN = {
    "forget_verbmem_ROUGE": 0.20,
    "forget_knowmem_ROUGE": 0.05,
    "retain_knowmem_ROUGE": 0.98,
    "model_utility": 0.98,
    "privleak": 0.0,
    "extraction_strength": 0.03,
}
DUSK_TRIALS = {  # (forget_specific_ROUGE, shared_ROUGE)
    "P": (0.90, 0.80, "complete"),
    "Q": (0.50, 0.78, "complete"),
    "R": (0.20, 0.50, "complete"),
    "S": (0.60, 0.60, "complete"),  # dominated by Q
    "T": (0.05, 0.10, "complete"),
    "U": (0.0, 0.0, "crashed"),  # an error before any report
}
DUSK_TARGET = {
    "forget_specific_ROUGE": 0.95,
    "shared_ROUGE": 0.82,
    "retain_specific_ROUGE": 0.9,
    "forget_verbmem_ROUGE": 0.9,
    "model_utility": 0.85,
    "retain_deviation": 0.0,
    "privleak": -90.0,
}
DUSK_RETAIN = {
    "forget_specific_ROUGE": 0.30,
    "shared_ROUGE": 0.80,
    "retain_specific_ROUGE": 0.9,
    "forget_verbmem_ROUGE": 0.3,
    "model_utility": 0.84,
    "retain_deviation": 1.0,
    "privleak": 0.0,
}


def _muse_metrics(forget: float, keep: float) -> dict:
    return {
        "forget_verbmem_ROUGE": forget,
        "model_utility": keep,
        "forget_knowmem_ROUGE": forget / 2,
        "retain_knowmem_ROUGE": keep,
        "privleak": -100.0 * forget,
        "extraction_strength": forget,
        "mia_min_k": 0.5,
    }


def _dusk_metrics(forget: float, keep: float) -> dict:
    return {
        "forget_specific_ROUGE": forget,
        "shared_ROUGE": keep,
        "retain_specific_ROUGE": keep,
        "forget_verbmem_ROUGE": forget,
        "model_utility": 0.5 + keep / 2,
        "retain_deviation": 10 * (1 - keep),
        "privleak": -50.0 * forget,
        "mia_min_k": 0.5,
    }


def write_doc_experiment(
    home: Path,
    benchmark: str,
    objectives: tuple[str, ...],
    trials: dict,
    target: dict,
    retain: dict,
    method: str = "npo",
) -> Path:
    """One method, one reported epoch per trial (its last), in the format of fake.py."""
    metrics_of = _muse_metrics if "muse" in benchmark else _dusk_metrics
    cfg = SweepConfig(
        method=method,
        source=Source(benchmark),
        trials=len(trials),
        objectives=objectives,
        utility_floor=0.1,
    )
    objs = get_objectives(list(objectives))
    home.mkdir(parents=True)
    manifest = {
        "tool": "unlearn-sweep",
        "version": "0.1.0",
        "name": home.name,
        "created": "2026-11-30T00:00:00+00:00",
        "sweeps": [to_dict(cfg)],
        "defaults": {method: defaults_point(cfg)},
    }
    (home / "unlearn_sweep.json").write_text(json.dumps(manifest, indent=2))
    (home / "reference").mkdir()
    bench = f"{benchmark}-{cfg.source.split}"
    (home / "reference" / f"target-{bench}.json").write_text(json.dumps(target))
    (home / "reference" / f"retain-{bench}.json").write_text(json.dumps(retain))
    (home / "optuna").mkdir()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(str(home / "optuna" / f"{method}.journal")))
    study = optuna.create_study(
        study_name=method,
        storage=storage,
        directions=[o.mode + "imize" for o in objs],
        sampler=optuna.samplers.RandomSampler(seed=0),
    )
    study.enqueue_trial(manifest["defaults"][method])
    floor = cfg.utility_floor * target["model_utility"]
    lines = []
    for tid, (forget, keep, status) in trials.items():
        trial = study.ask()
        params = SPACES[method](trial, SpaceOptions("tiny"))
        trial.set_user_attr("ray_trial_id", tid)
        if status == "crashed":
            error = "RuntimeError: CUDA error: out of memory"
            lines.append(rows.log_row("error", tid, method, params, error=error, time=1.8e9))
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            continue
        epoch = int(params["epochs"])
        m = metrics_of(forget, keep)
        violation = floor - m["model_utility"]
        assert (violation > 0) == (status == "stopped"), tid
        run = {
            "optimizer_steps": 3 * epoch,
            "epoch": epoch,
            "seeds": [0],
            "effective_batch": 32,
            "world_size": 1,
            "wall_time_s": 1.0,
            "device": "cpu",
            "host": "node-7",
            "version": "0.1.0",
            "utility_floor": floor,
            "utility_violation": violation,
        }
        report = rows.report(run, objective_values(m, objs), m) | _ray_fields(tid, epoch, 1.8e9)
        lines.append(rows.log_row("result", tid, method, params, report))
        lines.append(rows.log_row("complete", tid, method, params, time=1.8e9))
        trial.set_user_attr("epoch", epoch)
        trial.set_constraint("utility_floor", violation)
        study.tell(trial, [lines[-2]["objectives"][o.key] for o in objs])
    (home / "results").mkdir()
    (home / "results" / f"{method}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return home


@pytest.fixture(scope="module")
def muse(tmp_path_factory):
    return write_doc_experiment(
        tmp_path_factory.mktemp("m") / "muse",
        "tiny-muse",
        ("forget_verbmem", "model_utility"),
        MUSE_TRIALS,
        MUSE_TARGET,
        MUSE_RETAIN,
    )


@pytest.fixture(scope="module")
def dusk(tmp_path_factory):
    return write_doc_experiment(
        tmp_path_factory.mktemp("d") / "dusk",
        "tiny-dusk",
        ("forget_specific", "shared_knowledge"),
        DUSK_TRIALS,
        DUSK_TARGET,
        DUSK_RETAIN,
    )


def _on(a, mask) -> set[str]:
    return set(a.rows.loc[mask, "trial_id"])


# --- fronts and hypervolume ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "which, keys, front",
    [
        ("muse", ["forget_verbmem_ROUGE", "model_utility"], set("ABCD")),
        ("dusk", ["forget_specific_ROUGE", "shared_ROUGE"], set("PQRT")),
    ],
)
def test_fronts_use_the_sweeps_objectives(which, keys, front, request):
    a = analyze([request.getfixturevalue(which)])
    assert a.shared == (keys, ["min", "max"])
    assert _on(a, a.on_front) == _on(a, a.on_plot_front) == _on(a, a.on_global_front) == front


@pytest.mark.parametrize(
    "which, curve",
    [
        # reference (1, 0). Muse, by utility band: [0, .2] x .95 + [.2, .6] x .9 + [.6, .91] x .7
        # + [.91, .95] x .2 = .19 + .36 + .217 + .008; E, dominated, and F, stopped, add nothing
        (
            "muse",
            [
                0.2 * 0.95,
                0.7 * 0.91 + 0.2 * 0.04,
                0.9 * 0.6 + 0.7 * 0.31 + 0.008,
                0.775,
                0.775,
                0.775,
            ],
        ),
        # dusk: [0, .1] x .95 + [.1, .5] x .8 + [.5, .78] x .5 + [.78, .8] x .1 = .557; S is
        # dominated by Q, U crashed (counts as a trial, adds nothing)
        (
            "dusk",
            [
                0.1 * 0.8,
                0.5 * 0.78 + 0.1 * 0.02,
                0.8 * 0.5 + 0.5 * 0.28 + 0.002,
                0.542,
                0.095 + 0.32 + 0.14 + 0.002,
                0.557,
            ],
        ),
    ],
)
def test_hypervolume_equals_the_hand_computed_area(which, curve, request):
    a = analyze([request.getfixturevalue(which)])
    assert a.reference == [1.0, 0.0]
    assert a.curves["trials"].tolist() == list(range(1, 7))
    assert a.curves["hypervolume"].tolist() == pytest.approx(curve)


def test_every_objective_has_a_hypervolume_reference():
    assert set(pareto.REFERENCE) == {o.key for o in OBJECTIVES.values()}
    for o in OBJECTIVES.values():  # a reference is the worst end: no value in range is worse
        ref = pareto.reference_point([o.key])[0]
        assert ref == (
            pareto.LOG10_FQ_FLOOR
            if o.key == "log10_forget_quality"
            else {"min": 1.0, "max": 0.0}[o.mode]
            if o.key not in ("abs_privleak", "retain_deviation")
            else 100.0
        ), o.key


@pytest.mark.parametrize(
    "points, directions, ref, volume",
    [
        ([[0.3], [0.1], [0.7]], ("min",), (1.0,), 0.9),
        ([[0.3], [1.5]], ("max",), (0.0,), 1.5),
        ([[150.0, 0.5], [50.0, 0.5]], ("min", "max"), (100.0, 0.0), 25.0),  # 150 clipped to 100
        ([[0.0, 0.0, 0.0]], ("min", "min", "min"), (1.0, 2.0, 3.0), 6.0),
        ([[0.5, 0.5, 0.5], [0.0, 0.9, 0.9]], ("min", "max", "max"), (1, 0, 0), 0.81),  # 1st off
        # boxes .5 x .8 x .8 and .8 x .5 x .8, overlapping in .5 x .5 x .8
        ([[0.5, 0.2, 0.2], [0.2, 0.5, 0.2]], ("min",) * 3, (1, 1, 1), 0.32 + 0.32 - 0.2),
        ([], ("min", "min", "min"), (1.0, 1.0, 1.0), 0.0),
    ],
)
def test_hypervolume_hand_cases_in_1_and_3_dimensions(points, directions, ref, volume):
    pts = np.array(points, dtype=float).reshape(-1, len(directions))
    assert pareto.hypervolume(pts, directions, ref) == pytest.approx(volume)


@pytest.mark.parametrize("seed", range(4))
def test_3d_hypervolume_equals_optunas(seed):
    from optuna._hypervolume import compute_hypervolume

    pts = np.random.default_rng(seed).uniform(0, 1, size=(25, 3))
    ref = np.array([1.1, 1.1, 1.1])
    expected = compute_hypervolume(pts, ref)  # minimisation
    assert pareto.hypervolume(pts, ("min",) * 3, ref) == pytest.approx(expected)
    flipped = pareto.hypervolume(-pts, ("max", "max", "max"), -ref)
    assert flipped == pytest.approx(expected)


# --- analyze: plots and report ------------------------------------------------------------------


@pytest.mark.parametrize(
    "which, labels, refs",
    [
        (
            "muse",
            ("forget_verbmem_ROUGE (lower is better)", "model_utility (higher is better)"),
            "forget_verbmem_ROUGE 1 and model utility 0",
        ),
        (
            "dusk",
            ("forget_specific_ROUGE (lower is better)", "shared_ROUGE (higher is better)"),
            "forget_specific_ROUGE 1 and shared_ROUGE 0",
        ),
    ],
)
def test_analyze_writes_every_plot_and_the_report(which, labels, refs, request, capsys):
    home = request.getfixturevalue(which)
    assert main(["analyze", str(home)]) == 0
    assert "4 point(s) on the Pareto front" in capsys.readouterr().out
    plots = home / "analysis"
    for stem in ("pareto", "hypervolume", "params-npo", "importance"):
        assert (plots / f"{stem}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", stem
        assert 'src="plotly.min.js"' in (plots / f"{stem}.html").read_text(), stem
    page = (plots / "pareto.html").read_text()
    for text in (*labels, "target model", "retain model", "npo front (4)"):
        assert text in page, text
    md = (home / "report.md").read_text()
    x = labels[0].split()[0]
    for text in (
        f"## {x} vs ",
        f"Hypervolume reference point: {refs}",
        "### npo",
        "![pareto](analysis/pareto.png)",
        f"{x} (min)",
    ):
        assert text in md, text
    assert "<iframe src='analysis/pareto.html'" in (home / "report.html").read_text()
    assert not list(home.rglob("*.tmp"))


def test_references_without_the_objective_are_not_marked(tmp_path):
    retain = {k: v for k, v in MUSE_RETAIN.items() if k != "model_utility"}
    home = write_doc_experiment(
        tmp_path / "m",
        "tiny-muse",
        ("forget_verbmem", "model_utility"),
        MUSE_TRIALS,
        MUSE_TARGET,
        retain,
    )
    assert main(["analyze", str(home)]) == 0
    page = (home / "analysis" / "pareto.html").read_text()
    assert "target model" in page and "retain model" not in page


# --- export -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "which, args, picked",
    [
        # muse, normalised over the front A..D: n_verbmem A 0, B .667, C .933, D 1;
        # n_utility A 1, B .947, C .533, D 0
        ("muse", ["--rule", "knee"], "B"),  # distances A 1, B .34, C .47, D 1
        ("muse", ["--rule", "max-forget"], "B"),  # utility >= .9 x 1.0: A, B; lower verbmem: B
        ("muse", ["--rule", "max-forget", "--min-utility-frac", "0.95"], "A"),
        ("muse", ["--rule", "max-utility"], "C"),  # verbmem <= retain's .2: C, D (F stopped)
        ("muse", ["--rule", "weighted"], "B"),  # sums A 1, B 1.61, C 1.47, D 1
        ("muse", ["--rule", "weighted", "--weights", "2,1"], "C"),  # A 1, B 2.28, C 2.4, D 2
        ("muse", ["--rule", "weighted", "--weights", "1,0"], "D"),
        ("muse", ["--rule", "weighted", "--weights", "0,1"], "A"),
        # dusk over P, Q, R, T: n_forget P 0, Q .471, R .824, T 1; n_shared P 1, Q .971,
        # R .571, T 0
        ("dusk", ["--rule", "knee"], "R"),  # distances P 1, Q .53, R .46, T 1
        ("dusk", ["--rule", "max-forget"], "Q"),  # shared >= .9 x .82: P, Q; lower forget: Q
        ("dusk", ["--rule", "max-utility"], "R"),  # forget <= retain's .3: R, T; higher shared
        ("dusk", ["--rule", "weighted"], "Q"),  # sums P 1, Q 1.44, R 1.40, T 1
        ("dusk", ["--rule", "weighted", "--weights", "1,0"], "T"),
    ],
)
def test_each_export_rule_picks_the_hand_expected_trial(which, args, picked, request, capsys):
    home = request.getfixturevalue(which)
    assert main(["export", str(home), *args]) == 0
    doc = yaml.safe_load((home / "best" / "npo.yaml").read_text())
    assert doc == json.loads((home / "best" / "npo.json").read_text())
    job, doc = doc["job"], doc["info"]
    assert doc["trial"] == picked
    trials = MUSE_TRIALS if which == "muse" else DUSK_TRIALS
    keys = list(doc["objectives"])
    assert [doc["objectives"][k] for k in keys] == pytest.approx(trials[picked][:2])
    assert job["train"]["stop_after"] is None and doc["rule"]["name"] == args[1]
    assert "min_forget_quality" not in doc["rule"]
    assert f"npo: trial {picked} epoch" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--rule", "max-forget", "--min-utility-frac", "1.2"],
            "no trial reaches model_utility >= 1.2 x target 1 = 1.2; closest: trial A epoch",
        ),
        (
            ["--rule", "max-utility", "--min-forget-quality", "0.1"],
            "--min-forget-quality applies to forget_quality",
        ),
    ],
)
def test_export_refusals_name_the_objective(muse, args, message, tmp_path, capsys):
    home = tmp_path / "copy"
    shutil.copytree(muse, home, ignore=shutil.ignore_patterns("best"))
    assert main(["export", str(home), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and message in err
    assert not (home / "best").exists()


def test_unreachable_retain_bar_names_the_closest_trial(tmp_path, capsys):
    retain = MUSE_RETAIN | {"forget_verbmem_ROUGE": 0.001}
    home = write_doc_experiment(
        tmp_path / "m",
        "tiny-muse",
        ("forget_verbmem", "model_utility"),
        MUSE_TRIALS,
        MUSE_TARGET,
        retain,
    )
    assert main(["export", str(home), "--rule", "max-utility"]) == 2
    err = capsys.readouterr().err
    assert "forget_verbmem_ROUGE <= 0.001 (the retain model's); closest: trial D" in err


# --- one and three objectives -------------------------------------------------------------------


def test_three_objectives_analyse_and_export(tmp_path, capsys):
    home = write_doc_experiment(
        tmp_path / "m3",
        "tiny-muse",
        ("forget_verbmem", "model_utility", "privleak"),
        MUSE_TRIALS,
        MUSE_TARGET,
        MUSE_RETAIN,
    )
    a = analyze([home])
    assert a.shared[0] == ["forget_verbmem_ROUGE", "model_utility", "abs_privleak"]
    assert a.reference == [1.0, 0.0, 100.0]
    # abs_privleak = 100 x verbmem here: the third axis scales the 2-D area by 100 - 100 v,
    # so the volume is the integral over the front's staircase; check against Optuna instead
    from optuna._hypervolume import compute_hypervolume

    ok = a.rows[a.rows["status"] == "complete"]
    v = ok[a.shared[0]].to_numpy() * np.array([1, -1, 1])
    assert a.curves["hypervolume"].iloc[-1] == pytest.approx(
        compute_hypervolume(v, np.array([1.0, 0.0, 100.0]))
    )
    assert _on(a, a.on_plot_front) == set("ABCD")
    assert main(["analyze", str(home)]) == 0
    assert "hypervolume uses all three" in (home / "report.md").read_text()
    assert main(["export", str(home), "--rule", "max-forget"]) == 0
    assert yaml.safe_load((home / "best" / "npo.yaml").read_text())["info"]["trial"] == "B"
    capsys.readouterr()


def test_one_objective_analyses_and_exports(tmp_path, capsys):
    home = write_doc_experiment(
        tmp_path / "m1", "tiny-muse", ("forget_verbmem",), MUSE_TRIALS, MUSE_TARGET, MUSE_RETAIN
    )
    a = analyze([home])
    assert _on(a, a.on_front) == {"D"} and a.reference == [1.0]
    assert a.curves["hypervolume"].tolist() == pytest.approx([0.2, 0.7, 0.9, 0.95, 0.95, 0.95])
    assert main(["analyze", str(home)]) == 0
    assert "trial (sampling order)" in (home / "analysis" / "pareto.html").read_text()
    for rule in ("knee", "weighted"):
        assert main(["export", str(home), "--rule", rule]) == 0
        assert yaml.safe_load((home / "best" / "npo.yaml").read_text())["info"]["trial"] == "D"
    capsys.readouterr()
    assert main(["export", str(home), "--rule", "max-forget"]) == 2
    assert "needs a forget and a utility objective" in capsys.readouterr().err


# --- several folders ----------------------------------------------------------------------------


def test_folders_with_different_objectives_are_refused(muse, tmp_path, capsys):
    other = write_doc_experiment(
        tmp_path / "knowmem",
        "tiny-muse",
        ("forget_knowmem", "retain_knowmem"),
        MUSE_TRIALS,
        MUSE_TARGET,
        MUSE_RETAIN,
    )
    before = sorted(p.name for p in other.rglob("*"))
    assert main(["analyze", str(muse), str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert "different objectives" in err and "forget_knowmem_ROUGE" in err and "\n" not in err
    assert sorted(p.name for p in other.rglob("*")) == before


def test_folders_on_different_benchmarks_are_refused(muse, dusk, capsys):
    assert main(["analyze", str(muse), str(dusk)]) == 2
    err = capsys.readouterr().err.strip()
    assert "different benchmarks" in err and "\n" not in err


def test_folders_sharing_two_objectives_are_compared_on_them(tmp_path, capsys):
    two = write_doc_experiment(
        tmp_path / "two",
        "tiny-muse",
        ("forget_verbmem", "model_utility"),
        MUSE_TRIALS,
        MUSE_TARGET,
        MUSE_RETAIN,
    )
    three = write_doc_experiment(
        tmp_path / "three",
        "tiny-muse",
        ("forget_verbmem", "model_utility", "privleak"),
        MUSE_TRIALS,
        MUSE_TARGET,
        MUSE_RETAIN,
    )
    a = analyze([two, three])
    assert a.shared == (["forget_verbmem_ROUGE", "model_utility"], ["min", "max"])
    assert a.curves.groupby("series")["hypervolume"].last().tolist() == pytest.approx([0.775] * 2)
    assert main(["analyze", str(two), str(three)]) == 0
    md = (two / "comparison" / "report.md").read_text()
    assert "## Front across series" in md and "use the ones they share" in md
    capsys.readouterr()


# --- TOFU as before -----------------------------------------------------------------------------


def test_tofu_keeps_its_plane_reference_and_hypervolume(tmp_path):
    from fixtures_analysis.fake import write_experiment

    home = write_experiment(tmp_path / "tofu", methods=("npo",), trials=5, outcomes={})
    a = analyze([home])
    assert a.shared == (list(pareto.FQ_MU), ["max", "max"])
    assert a.reference == [pareto.LOG10_FQ_FLOOR, 0.0]
    assert a.on_plot_front.equals(pareto.front(a.rows, pareto.FQ_MU, ("max", "max")))
    ok = a.rows[a.rows["status"] == "complete"]
    assert a.curves["hypervolume"].iloc[-1] == pareto.fq_mu_hypervolume(
        ok["log10_forget_quality"].to_numpy(), ok["model_utility"].to_numpy()
    )
    assert main(["analyze", str(home)]) == 0
    md = (home / "report.md").read_text()
    assert "## Forget quality vs model utility" in md
    assert (
        "Hypervolume reference point: log10 forget quality -20 (lower values are clipped "
        "there) and model utility 0.\n"
    ) in md
