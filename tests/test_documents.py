"""The document benchmarks end to end on their test-sized built-in variants (tiny-muse-small,
tiny-dusk-small): the tiny target continues forget passages verbatim and the retrain model does
not; `unlearn` runs and prints each benchmark's metrics; a small sweep runs on each; bad inputs
give one line; and nothing touches the network when data and models are local."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest

from unlearn_core import builtin
from unlearn_core.evaluate import EvalConfig
from unlearn_core.job import evaluate_model
from unlearn_core.source import Source

NAMES = ("tiny-muse-small", "tiny-dusk-small")


@pytest.fixture(scope="module")
def doc_models():
    return {n: builtin.model_dirs(n, ("full", "retrain")) for n in NAMES}


def cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "unlearn_sweep", *args], capture_output=True, text=True, cwd=cwd
    )


def test_targets_memorise_and_retrain_models_do_not(doc_models):
    m = {
        (n, k): evaluate_model(Source(n, "forget", model=str(doc_models[n][k])), EvalConfig())[0]
        for n in NAMES
        for k in ("full", "retrain")
    }
    for n in NAMES:
        target, retrain = m[n, "full"], m[n, "retrain"]
        assert target["forget_verbmem_ROUGE"] >= 0.8 > retrain["forget_verbmem_ROUGE"] + 0.3
        assert retrain["privleak"] == pytest.approx(0.0, abs=1e-6)  # its own reference
        assert target["model_utility"] >= 0.9 and retrain["model_utility"] >= 0.9
    muse_t, muse_r = m["tiny-muse-small", "full"], m["tiny-muse-small", "retrain"]
    assert muse_t["forget_knowmem_ROUGE"] >= 0.9 and muse_r["forget_knowmem_ROUGE"] <= 0.3
    assert muse_t["privleak"] < -50  # the target's forget texts look like members
    dusk_t, dusk_r = m["tiny-dusk-small", "full"], m["tiny-dusk-small", "retrain"]
    assert dusk_t["forget_specific_ROUGE"] >= 0.9 and dusk_r["forget_specific_ROUGE"] <= 0.3
    assert min(dusk_t["shared_ROUGE"], dusk_r["shared_ROUGE"]) >= 0.9  # shared: both answer


@pytest.mark.parametrize(
    "name, shown",
    [
        (
            "tiny-muse-small",
            ("forget_knowmem_ROUGE", "forget_verbmem_ROUGE", "retain_knowmem_ROUGE", "privleak"),
        ),
        (
            "tiny-dusk-small",
            (
                "forget_specific_ROUGE",
                "shared_ROUGE",
                "retain_specific_ROUGE",
                "forget_verbmem_ROUGE",
                "privleak",
                "retain_deviation",
            ),
        ),
    ],
)
@pytest.mark.slow  # a CLI run that trains and evaluates twice, end to end (make test-slow)
def test_unlearn_prints_the_benchmark_metrics(doc_models, name, shown, tmp_path):
    out = cli(
        "unlearn",
        "--method",
        "npo",
        "--benchmark",
        name,
        "--lr",
        "2e-3",
        "--epochs",
        "3",
        "--batch-size",
        "4",
        "--grad-accum",
        "1",
        "--output",
        str(tmp_path / "m"),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines() if line.strip()}
    for key in shown:
        assert key in rows and len(rows[key]) == 2, out.stdout  # before and after
    before, after = (float(v) for v in rows["forget_verbmem_ROUGE"])
    assert after < before  # NPO on the forget documents lowers their verbatim recall
    saved = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert saved["job"]["source"]["benchmark"] == name
    assert saved["job"]["source"]["split"] == "forget"


@pytest.mark.slow
def test_a_small_sweep_runs_on_each(doc_models, tmp_path):
    from analysis.load import load_study
    from sweeps.experiment import is_epoch_point
    from unlearn_sweep.cli import main

    for name, keys in (
        ("tiny-muse-small", ("forget_verbmem_ROUGE", "model_utility")),
        ("tiny-dusk-small", ("forget_specific_ROUGE", "shared_ROUGE")),
    ):
        code = main(
            [
                "sweep",
                "--method",
                "grad_ascent",
                "--benchmark",
                name,
                "--trials",
                "2",
                "--fix",
                "epochs=2",
                "--batch-size",
                "4",
                "--grad-accum",
                "1",
                "--max-concurrent",
                "2",
                "--output",
                str(tmp_path),
                "--name",
                name,
            ]
        )
        assert code == 0
        home = tmp_path / name
        study = load_study(home, "grad_ascent")
        told = [t for t in study.trials if not is_epoch_point(t)]  # epoch 1s are points too
        assert [t.state.name for t in told] == ["COMPLETE", "COMPLETE"] and len(study.trials) == 4
        rows = [
            json.loads(x) for x in (home / "results" / "grad_ascent.jsonl").read_text().splitlines()
        ]
        assert all(k in r["objectives"] for r in rows if r["event"] == "result" for k in keys)
        for t in told:  # the trial itself holds the objectives of its last report
            mine = [
                r
                for r in rows
                if r["trial_id"] == t.user_attrs["ray_trial_id"] and r["event"] == "result"
            ]
            last = max(mine, key=lambda r: r["run"]["epoch"])
            values = [last["objectives"][k] for k in keys]
            assert last["run"]["epoch"] == 2 and t.values == pytest.approx(values)
        # the analysis reads the sweep's own objectives: front, plots, report and an export
        assert main(["analyze", str(home)]) == 0
        assert (home / "report.md").is_file() and (home / "analysis" / "pareto.png").is_file()
        assert main(["export", str(home), "--rule", "knee"]) == 0
        best = json.loads((home / "best" / "grad_ascent.json").read_text())
        assert best["job"]["source"]["benchmark"] == name and set(
            best["info"]["objectives"]
        ) == set(keys)


BAD = [
    (
        ["unlearn", "--method", "idk_dpo", "--benchmark", "tiny-muse-small"],
        "method idk_dpo needs question/answer data (view forget_idk)",
    ),
    (
        ["unlearn", "--method", "npo", "--benchmark", "tiny-dusk-small", "--split", "forget10"],
        "unknown split 'forget10' for tiny-dusk-small; accepted: forget",
    ),
    (
        [
            "sweep",
            "--method",
            "npo",
            "--benchmark",
            "tiny-muse-small",
            "--objectives",
            "forget_quality,model_utility",
            "--output",
            "exp",
        ],
        "objective 'forget_quality' is not reported by tiny-muse-small",
    ),
    (
        ["evaluate", "--model", "org/model", "--benchmark", "dusk", "--retain-logs", "x.json"],
        "retain logs 'x.json' do not exist",
    ),
    (
        ["unlearn", "--method", "npo", "--benchmark", "tiny-muse-small", "--template", "alpaca"],
        "unknown prompt template 'alpaca'; accepted: chat, llama2, base",
    ),
]
try:
    import lm_eval  # noqa: F401
except ImportError:  # the optional extra is absent here: the flag says so in one line
    BAD.append(
        (
            [
                "evaluate",
                "--model",
                "org/model",
                "--benchmark",
                "tiny-dusk-small",
                "--downstream",
                "arc_challenge",
            ],
            "downstream tasks need lm-evaluation-harness",
        )
    )


@pytest.mark.parametrize("args, message", BAD, ids=[" ".join(a[:4]) for a, _ in BAD])
def test_bad_document_inputs_are_one_line(args, message, tmp_path):
    out = cli(*args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert list(tmp_path.iterdir()) == []


def test_dusk_refuses_open_unlearning_logs(tmp_path):
    log = tmp_path / "MUSE_EVAL.json"
    log.write_text("{}")
    out = cli("evaluate", "--model", "org/model", "--benchmark", "dusk", "--retain-logs", str(log))
    assert out.returncode == 2 and "DUSK has none" in out.stderr, out.stderr


def test_no_network_when_data_and_models_are_local(doc_models, small_benchmark, monkeypatch):
    """HF_HUB_OFFLINE is set by conftest; on top, any socket connection fails the test."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network used")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    cfg = EvalConfig(generate=False)
    model = str(doc_models["tiny-muse-small"]["full"])
    m, _ = evaluate_model(Source("tiny-muse-small", "forget", model=model), cfg)
    assert "privleak" in m
    # the `tofu` benchmark (the hub path) on a local copy of the data and local models
    local_tofu = Source(
        "tofu",
        "forget10",
        data=str(small_benchmark["data"]),
        model=str(small_benchmark["target"]),
        retain_model=str(small_benchmark["retain"]),
    )
    m, _ = evaluate_model(local_tofu, cfg)
    assert "forget_quality" in m
    assert attempts == []
    # the retain model's reference was computed once and cached for the next run
    from unlearn_core.benchmarks import resolve

    setup = resolve(
        "tofu",
        "forget10",
        model=str(small_benchmark["target"]),
        data=str(small_benchmark["data"]),
        retain_model=str(small_benchmark["retain"]),
    )
    assert setup.reference_cache.is_file()
    again, _ = evaluate_model(local_tofu, cfg)
    assert again["forget_quality"] == m["forget_quality"]


@pytest.mark.slow  # two CLI evaluations with their references, end to end (make test-slow)
def test_hub_benchmarks_run_on_a_local_copy(doc_models, tmp_path):
    """`muse-news` / `dusk` (the hub paths) on local data of the same schema and local models:
    MUSE runs with its own lengths (10-shot prompts cut to the copy's shots); DUSK's 1024-token
    MIA chunks leave the small copy 2 forget chunks, which the reference refuses in one line."""
    muse = doc_models["tiny-muse-small"]
    out = cli(
        "evaluate",
        "--benchmark",
        "muse-news",
        "--data",
        str(builtin.data_dir("tiny-muse-small")),
        "--model",
        str(muse["full"]),
        "--retain-model",
        str(muse["retrain"]),
        "--output",
        str(tmp_path / "m.json"),
    )
    assert out.returncode == 0, out.stderr[-2000:]
    m = json.loads((tmp_path / "m.json").read_text())
    assert {"forget_knowmem_ROUGE", "forget_verbmem_ROUGE", "privleak"} <= set(m)
    dusk = doc_models["tiny-dusk-small"]
    out = cli(
        "evaluate",
        "--benchmark",
        "dusk",
        "--data",
        str(builtin.data_dir("tiny-dusk-small")),
        "--model",
        str(dusk["full"]),
        "--retain-model",
        str(dusk["retrain"]),
    )
    # 2 forget chunks of 1024 tokens: whether the retrain AUC is exactly 0 hangs on two scores,
    # so either outcome is allowed here; the refusal itself is tested without a model below
    if out.returncode == 2:
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr[-2000:]
        assert "AUC is 0 (over 2 forget chunks)" in out.stderr
    else:
        assert out.returncode == 0, out.stderr[-2000:]
        assert "shared_ROUGE" in out.stdout and "retain_specific_ROUGE" in out.stdout


def test_dusk_reference_with_a_zero_auc_is_refused_in_one_line():
    from unlearn_core.doc_eval import DocReference
    from unlearn_core.errors import UserError

    with pytest.raises(UserError, match=r"AUC is 0 \(over 2 forget chunks\)"):
        DocReference("dusk", "forget", {"mia_min_k_plus_plus": 0.0}, 2)
    assert DocReference("dusk", "forget", {"mia_min_k_plus_plus": 0.5}, 2).n_forget == 2
