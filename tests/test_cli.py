"""The command line: every user error gives one line on stderr, exit code 2, no traceback, and
writes nothing; `methods` lists the registry."""

from __future__ import annotations

import subprocess
import sys

import pytest

from unlearn_core.methods import METHODS


def cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "unlearn_sweep", *args], capture_output=True, text=True, cwd=cwd
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
    (["--method", "npo", "--address", "ray://127.0.0.1:10001"], "Ray Client (ray://) is not"),
    (["--method", "npo", "--storage", "/proc/nope"], "storage '/proc/nope' is not writable"),
    (["--method", "npo", "--trials", "0"], "trials must be >= 1"),
    (["--config", "missing.yaml"], "sweep file 'missing.yaml' does not exist"),
]


@pytest.mark.parametrize("args,message", BAD_SWEEPS, ids=[" ".join(a) for a, _ in BAD_SWEEPS])
def test_bad_sweeps_fail_before_any_trial(args, message, tmp_path, monkeypatch, capsys):
    # in-process (the subprocess path of main() is covered above): one start-up for the table
    from unlearn_sweep.cli import main

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


def _method_blocks(text: str) -> dict[str, list[str]]:
    """`methods` output split into one block of lines per method (a block starts unindented)."""
    blocks: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.startswith(" "):
            blocks[line.split()[0]] = []
        else:
            blocks[list(blocks)[-1]].append(line)
    return blocks


def test_methods_shows_each_reference_point_on_both_presets_with_sources(capsys):
    """Every method's block holds its reference point under tiny and llm, a value in each preset's
    column and a source for every row, and the values are those a sweep evaluates first."""
    from search_spaces import reference_point
    from search_spaces._common import SpaceOptions
    from unlearn_sweep.cli import _shown, main

    assert main(["methods"]) == 0
    blocks = _method_blocks(capsys.readouterr().out)
    assert set(blocks) == set(METHODS)
    for name, lines in blocks.items():
        (head,) = [line for line in lines if "reference (tofu)" in line]
        assert "tiny (2 layers)" in head and "llm (32 layers)" in head, name
        rows = {line.split()[0]: line.split(maxsplit=3) for line in lines[2:]}
        tiny = reference_point(name, SpaceOptions("tiny"))
        llm = reference_point(name, SpaceOptions("llm"))
        assert set(rows) == set(tiny) | set(llm), name
        for key, (_, tiny_value, llm_value, source) in rows.items():
            assert tiny_value == _shown(tiny[key].value) and llm_value == _shown(llm[key].value)
            for ref in (tiny[key], llm[key]):
                assert ref.source in source, (name, key)
    rmu = {line.split()[0]: line.split()[1:3] for line in blocks["rmu"][2:]}
    assert rmu["layer"] == ["1", "7"] and rmu["trainable_layers"] == ["0,1", "5,6,7"]


def test_methods_filters_one_method_a_family_and_a_depth(capsys):
    from unlearn_sweep.cli import main

    assert main(["methods", "--method", "grun", "--family", "muse", "--n-layers", "16"]) == 0
    blocks = _method_blocks(capsys.readouterr().out)
    assert list(blocks) == ["grun"]
    rows = {line.split()[0]: line.split()[1:3] for line in blocks["grun"][2:]}
    assert rows["layers"] == ["0,1", "10,12,15"] and rows["lr"] == ["0.001", "0.004"]
    assert rows["batch_size"] == ["8", "4"]  # MUSE's 4 x 8 on real models
    assert main(["methods", "--method", "nope"]) == 2
    assert "unknown method 'nope'" in capsys.readouterr().err


BAD_EXPORTS = [
    ("job:\n  method: npo\n  shell: rm -rf /\n", "job has no field 'shell'; accepted: method"),
    ("job:\n  method: npo\n  train:\n    lr: fast\n", "job.train.lr must be float, got 'fast'"),
    ("job:\n  method: npo\n  source:\n    benchmark: mmlu\n", "unknown benchmark 'mmlu'"),
    ("job:\n  method: npo\n  source:\n    prompt:\n      template: x\n", "unknown prompt template"),
    ("method: npo\nsplit: forget10\n", "is not an exported config; it needs the keys job"),
    ("job:\n  method: npo\nnotes: x\n", "unknown key 'notes'; accepted: job, info"),
]


@pytest.mark.parametrize("doc,message", BAD_EXPORTS, ids=[m for _, m in BAD_EXPORTS])
def test_bad_exported_configs_are_one_line_exit_2(doc, message, tmp_path, monkeypatch, capsys):
    from unlearn_sweep.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "best.yaml").write_text(doc)
    code = main(["unlearn", "--config", "best.yaml"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: best.yaml"), err
    assert message in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.yaml"]


def test_flags_given_with_config_override_the_files_values():
    from unlearn_core.data.format import PromptFormat
    from unlearn_core.job import JobConfig, job_from_dict, job_to_dict
    from unlearn_core.source import Source
    from unlearn_sweep.cli import build_parser, job_dict

    exported = job_to_dict(
        JobConfig(
            method="npo",
            hparams={"beta": 0.2, "alpha": 2.0},
            source=Source(
                "tiny-tofu-small", prompt=PromptFormat(template="base", date_string="1 Jan 2026")
            ),
        )
    )
    args = build_parser().parse_args(["unlearn", "--config", "x.yaml"])
    assert job_from_dict(job_dict(args, exported)) == job_from_dict(exported)  # nothing given
    flags = ["--lr", "0.5", "--hp", "beta=0.3", "--template", "chat", "--split", "forget05"]
    job = job_from_dict(
        job_dict(build_parser().parse_args(["unlearn", "--config", "x", *flags]), exported)
    )
    assert job.train.lr == 0.5 and job.train.epochs == 10  # the rest: the file's (TrainConfig's)
    assert job.hparams == {"beta": 0.3, "alpha": 2.0} and job.source.split == "forget05"
    assert job.source.prompt == PromptFormat(template="chat", date_string="1 Jan 2026")
    assert job.source.benchmark == "tiny-tofu-small"


def _options(command: str) -> list:
    from unlearn_sweep.cli import build_parser

    (sub,) = [a for a in build_parser()._actions if a.dest == "command"]
    return [a for a in sub.choices[command]._actions if a.option_strings and a.dest != "help"]


@pytest.mark.parametrize("command", ["unlearn", "evaluate", "sweep"])
def test_every_option_has_help_and_its_default(command):
    for a in _options(command):
        assert a.help and (a.required or "default" in a.help), a.option_strings
    flags = {a.dest for a in _options(command)}
    assert {"benchmark", "split", "data", "template", "system_prompt", "date_string"} <= flags


def test_flags_are_the_dataclass_fields_and_the_sweep_file_keys():
    import dataclasses

    from sweeps.config import SweepConfig, load_yaml_keys
    from unlearn_core.source import PROMPT_KEYS, SOURCE_KEYS
    from unlearn_core.train import TrainConfig

    sweep = {a.dest for a in _options("sweep")}
    fields = {f.name for f in dataclasses.fields(SweepConfig)} - {"source", "method", "fixed"}
    assert fields | set(SOURCE_KEYS) | set(PROMPT_KEYS) <= sweep
    # the file names them as the flags do (methods and fixed: --method's list, --fix's mapping)
    assert load_yaml_keys() == (sweep - {"config", "fix"}) | {"methods", "fixed"}
    unlearn = {a.dest for a in _options("unlearn")}
    assert {"lr", "epochs", "batch_size", "schedule", "seed"} <= unlearn
    assert {"lr", "epochs", "batch_size", "schedule", "seed"} <= {
        f.name for f in dataclasses.fields(TrainConfig)
    }


def test_version(capsys):
    from unlearn_core.version import VERSION
    from unlearn_sweep.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"unlearn-sweep {VERSION}"
