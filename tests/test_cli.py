"""The command line: every user error gives one line on stderr, exit code 2, no traceback, and
writes nothing; `methods` lists the registry."""

from __future__ import annotations

import subprocess
import sys

import pytest

from unlearn_core.methods import METHODS


def cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "sweeps.cli", *args], capture_output=True, text=True, cwd=cwd
    )


BAD = [
    (["unlearn", "--method", "nope"], "unknown method 'nope'"),
    (["unlearn", "--method", "npo", "--benchmark", "mmlu"], "unknown benchmark 'mmlu'"),
    (["unlearn", "--method", "npo", "--split", "forget42"], "unknown split 'forget42'"),
    (["unlearn", "--method", "npo", "--lr", "0"], "lr must be positive"),
    (["unlearn", "--method", "npo", "--epochs", "-1"], "epochs must be positive"),
    (["unlearn", "--method", "npo", "--batch-size", "0"], "batch_size must be positive"),
    (["unlearn", "--method", "npo", "--hp", "zeta=1"], "npo has no hyperparameter 'zeta'"),
    (["unlearn", "--method", "npo", "--hp", "beta=-1"], "beta must be > 0"),
    (["unlearn", "--method", "npo", "--model", "/no/such/model"], "/no/such/model"),
    (["unlearn", "--method", "npo", "--lr", "abc"], "invalid float value"),
    (["evaluate", "--model", "/no/such/model"], "/no/such/model"),
    (["prepare", "mmlu"], "unknown built-in benchmark"),
    (["frobnicate"], "invalid choice"),
]


@pytest.mark.parametrize("args,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_user_errors_are_one_line_exit_2(args, message, tmp_path):
    out = cli(*args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], out.stderr
    assert "Traceback" not in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_data_folder_missing_field_or_config(tmp_path, small_benchmark):
    import json

    data = tmp_path / "data"
    data.mkdir()
    for p in small_benchmark["data"].glob("*.json"):
        (data / p.name).write_text(p.read_text())
    rows = json.loads((data / "forget10_perturbed.json").read_text())
    del rows[3]["paraphrased_answer"]
    (data / "forget10_perturbed.json").write_text(json.dumps(rows))
    out = cli(
        "evaluate",
        "--model",
        str(small_benchmark["target"]),
        "--benchmark",
        "tofu",
        "--data",
        str(data),
        "--retain-model",
        str(small_benchmark["retain"]),
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == (
        f"error: {data} config 'forget10_perturbed' split 'train' row 3 "
        "lacks field "
        "'paraphrased_answer'; required: question, answer, "
        "paraphrased_answer, perturbed_answer"
    )
    rows[3]["paraphrased_answer"] = "restored"
    (data / "forget10_perturbed.json").write_text(json.dumps(rows))
    (data / "holdout10.json").unlink()
    out = cli(
        "evaluate",
        "--model",
        str(small_benchmark["target"]),
        "--benchmark",
        "tofu",
        "--data",
        str(data),
        "--retain-model",
        str(small_benchmark["retain"]),
    )
    assert out.returncode == 2 and "has no config 'holdout10'" in out.stderr


SWEEP = ["sweep", "--benchmark", "tiny-tofu-small", "--output", "exp", "--trials", "2"]
BAD_SWEEPS = [
    (["--method", "nope"], "unknown method 'nope'"),
    (["--method", "npo", "--sampler", "foo"], "unknown sampler 'foo'"),
    (["--method", "npo", "--space", "lr=1e-3:1e-4:log"], "empty range: low 0.001 > high 0.0001"),
    (["--method", "npo", "--space", "lr=0:1e-3:log"], "log-scale range needs a positive low"),
    (["--method", "npo", "--space", "lr=abc"], "--space expects NAME=LOW:HIGH"),
    (["--method", "npo", "--fix", "epochs=2.5"], "--fix epochs=2.5: expected an integer"),
    (["--method", "npo", "--fix", "zeta=1"], "npo searches no parameter 'zeta'"),
    (["--method", "npo", "--objectives", "forget_quality,bogus"], "unknown objective 'bogus'"),
    (["--method", "npo", "--gpus-per-trial", "1"], "--gpus-per-trial 1.0 but the cluster has 0"),
    (["--method", "npo", "--address", "127.0.0.1:1"], "cannot reach a Ray cluster"),
    (["--method", "npo", "--storage", "/proc/nope"], "storage '/proc/nope' is not writable"),
    (["--method", "npo", "--trials", "0"], "trials must be >= 1"),
    (["--config", "missing.yaml"], "sweep file 'missing.yaml' does not exist"),
]


@pytest.mark.parametrize("args,message", BAD_SWEEPS, ids=[" ".join(a) for a, _ in BAD_SWEEPS])
def test_bad_sweeps_fail_before_any_trial(args, message, tmp_path, monkeypatch, capsys):
    # in-process (the subprocess path of main() is covered above): one start-up for the table
    from sweeps.cli import main

    monkeypatch.chdir(tmp_path)
    try:
        code = main([*SWEEP, *args])
    finally:
        import ray

        ray.shutdown()
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.strip().splitlines()[-1].startswith("error: ") and message in err
    assert list(tmp_path.iterdir()) == []  # no experiment folder was started


def test_existing_experiment_with_other_config_is_refused(tmp_path):
    home = tmp_path / "exp" / "mine"
    home.mkdir(parents=True)
    manifest = {"tool": "unlearn-sweep", "version": "0.1.0", "name": "mine", "sweeps": []}
    (home / "unlearn_sweep.json").write_text(__import__("json").dumps(manifest))
    before = (home / "unlearn_sweep.json").read_text()
    out = cli(*SWEEP, "--method", "npo", "--name", "mine", cwd=tmp_path)
    assert out.returncode == 2
    assert "exists with a different configuration" in out.stderr
    assert (home / "unlearn_sweep.json").read_text() == before
    out = cli("resume", str(tmp_path), cwd=tmp_path)
    assert out.returncode == 2 and "is not an unlearn-sweep experiment" in out.stderr


def test_existing_output_is_never_overwritten(tmp_path):
    keep = tmp_path / "out"
    keep.mkdir()
    (keep / "precious.txt").write_text("x")
    out = cli("unlearn", "--method", "npo", "--output", str(keep))
    assert out.returncode == 2 and "exists" in out.stderr
    assert (keep / "precious.txt").read_text() == "x"


def test_methods_lists_registry():
    out = cli("methods")
    assert out.returncode == 0
    for name in METHODS:
        assert name in out.stdout
    assert "beta=0.1" in out.stdout
