"""Mistaken and hostile input (issue 18), as one table: values a trial would refuse, hostile or
mistyped YAML, a model folder with custom code, damaged experiment folders and failed writes.
Each case: exit 2, one line on stderr, no traceback, the folder byte-for-byte as it was, and an
alarm that fails a case which hangs. Nothing here starts Ray: every case is refused before."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fixtures_analysis.fake import write_experiment

SWEEP = ["sweep", "--method", "npo", "--benchmark", "tiny-tofu-small", "--trials", "2"]
UNLEARN = ["unlearn", "--method", "npo", "--benchmark", "tiny-tofu-small", "--epochs", "1"]
EXPORT = {  # the job section of an export (analysis/export.py writes it under `job`)
    "method": "npo",
    "source": {"benchmark": "tiny-tofu-small", "split": "forget10"},
    "hparams": {"beta": 0.1},
    "train": {"lr": 0.001, "epochs": 1, "batch_size": 8, "grad_accum": 4, "seed": 0},
}
LIMIT_S = 120  # a case that takes longer hangs (the first one pays for the imports)


def snapshot(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def _alarm(signum, frame):
    raise TimeoutError(f"a bad-input case ran past {LIMIT_S} s")


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> Path:
    """A finished fake experiment (no Ray): one method, three trials, analysed nowhere yet."""
    return write_experiment(tmp_path_factory.mktemp("fake") / "exp", methods=("npo",), trials=3)


@pytest.fixture
def root(fake, tmp_path) -> Path:
    """tmp_path/root holding a private copy of the experiment (exp), a plain file and a folder."""
    root = tmp_path / "root"
    shutil.copytree(fake, root / "exp")
    (root / "afile").write_text("not a folder")
    return root


def write(root: Path, rel: str, content: str | bytes) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)


def yaml_file(text: str | bytes, name: str = "in.yaml"):
    return lambda root: write(root, name, text)


def export_file(**change):
    def prepare(root: Path) -> None:
        import yaml

        doc = json.loads(json.dumps(EXPORT))
        for key, value in change.items():
            section, _, field = key.partition("__")
            (doc[section] if field else doc)[field or section] = value
        write(root, "best.yaml", yaml.safe_dump({"job": doc, "info": {}}))

    return prepare


def manifest(edit):
    def prepare(root: Path) -> None:
        path = root / "exp" / "unlearn_sweep.json"
        doc = json.loads(path.read_text())
        edit(doc)
        path.write_text(json.dumps(doc))

    return prepare


def custom_code(config: str = "config.json"):
    def prepare(root: Path) -> None:
        doc = {"model_type": "llama", "auto_map": {"AutoModelForCausalLM": "evil.EvilModel"}}
        write(root, "model/config.json", json.dumps({"model_type": "llama"}))
        write(root, f"model/{config}", json.dumps(doc))
        write(root, "model/evil.py", "import os\nos.system('touch /tmp/pwned-by-bad-input')\n")

    return prepare


def oserror(target: str, code: int, filename: str = "{exp}/ray/npo/experiment_state.json"):
    """Patch `target` (module:function) to fail as a full or read-only disk would."""

    def prepare(root: Path, monkeypatch) -> None:
        import importlib

        module, _, name = target.partition(":")

        def fail(*args, **kwargs):
            raise OSError(code, os.strerror(code), filename.format(exp=root / "exp"))

        monkeypatch.setattr(importlib.import_module(module), name, fail)

    return prepare


BILLION = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
DEEP = "method: npo\nspace: " + "[" * 10000 + "]" * 10000 + "\n"
NOT_A_ROW = '[1, 2]\n{"event": "result"}\n'
FAILED = {0: "failed", 1: "crashed"}  # a study with no completed trial

# (id, prepare(root) or None, args ({root}, {exp} filled in), message)
VALUES = [
    ("gpus-nan", None, [*SWEEP, "--gpus-per-trial", "nan"], "gpus_per_trial must be a finite"),
    ("cpus-nan", None, [*SWEEP, "--cpus-per-trial", "nan"], "cpus_per_trial must be a finite"),
    ("cpus-inf", None, [*SWEEP, "--cpus-per-trial", "inf"], "cpus_per_trial must be a finite"),
    ("gpus-inf", None, [*SWEEP, "--gpus-per-trial", "inf"], "gpus_per_trial must be a finite"),
    ("cpus-1.5", None, [*SWEEP, "--cpus-per-trial", "1.5"], "a fraction below 1 or a whole"),
    ("gpus-2.5", None, [*SWEEP, "--gpus-per-trial", "2.5"], "a fraction below 1 or a whole"),
    ("seed-negative", None, [*SWEEP, "--seed", "-1"], "seed -1: trial seeds must lie in"),
    ("seed-huge", None, [*SWEEP, "--seed", "99999999999999"], "trial seeds must lie in 0..2**32"),
    ("seeds-past-max", None, [*SWEEP, "--seed", "4294967295", "--seeds", "2"], "4294967296"),
    ("fix-lr-negative", None, [*SWEEP, "--fix", "lr=-1"], "--fix lr=-1: lr must be positive"),
    ("fix-beta-negative", None, [*SWEEP, "--fix", "beta=-1"], "beta must be > 0"),
    ("fix-epochs-zero", None, [*SWEEP, "--fix", "epochs=0"], "epochs must be positive"),
    ("fix-lr-bool", None, [*SWEEP, "--fix", "lr=true"], "--fix lr=True: expected a number"),
    ("fix-beta-bool", None, [*SWEEP, "--fix", "beta=false"], "expected a number"),
    ("fix-epochs-float", None, [*SWEEP, "--fix", "epochs=1.5"], "expected an integer"),
    ("fix-lr-inf", None, [*SWEEP, "--fix", "lr=inf"], "expected a number"),
    ("fix-warmup-negative", None, [*SWEEP, "--fix", "warmup_epochs=-1"], "must be >= 0"),
    ("space-int-bounds", None, [*SWEEP, "--space", "epochs=1.5:2.5:int"], "whole-number bounds"),
    ("space-int-param", None, [*SWEEP, "--space", "epochs=1.5:3"], "epochs is an integer"),
    ("space-lr-negative", None, [*SWEEP, "--space", "lr=-1:1e-3"], "(value -1): lr must be"),
    ("space-beta-negative", None, [*SWEEP, "--space", "beta=-1:1"], "beta must be > 0"),
    ("space-nan", None, [*SWEEP, "--space", "lr=nan:1"], "bounds must be finite"),
    ("space-epochs-zero", None, [*SWEEP, "--space", "epochs=0:3:int"], "epochs must be positive"),
    ("name-newline", None, [*SWEEP, "--name", "a\nb"], "must be a plain folder name"),
    ("name-tab", None, [*SWEEP, "--name", "a\tb"], "must be a plain folder name"),
    ("name-slash", None, [*SWEEP, "--name", "a/b"], "must be a plain folder name"),
    ("name-dotdot", None, [*SWEEP, "--name", ".."], "must be a plain folder name"),
    ("name-dash", None, [*SWEEP, "--name=-rf"], "must be a plain folder name"),
    ("floor-nan", None, [*SWEEP, "--utility-floor", "nan"], "utility_floor"),
    ("unlearn-lr-inf", None, [*UNLEARN, "--lr", "inf"], "lr must be a finite number"),
    ("unlearn-seed-negative", None, [*UNLEARN, "--seed", "-1"], "seed must be in 0..2**32-1"),
    ("unlearn-hp-bool", None, [*UNLEARN, "--hp", "beta=true"], "beta must be float, got True"),
    ("unlearn-warmup-nan", None, [*UNLEARN, "--warmup-epochs", "nan"], "must be a finite"),
    # issue 17: warm start and extend
    ("warm-start-a-file", None, [*SWEEP, "--warm-start", "{root}/afile"], "is not a folder"),
    ("warm-start-no-experiment", None, [*SWEEP, "--warm-start", "{root}"], "not an unlearn-sweep"),
    (
        "warm-start-other-method",
        None,
        [*SWEEP, "--method", "grad_diff", "--warm-start", "{exp}"],
        "holds a study of another method (npo), not of grad_diff",
    ),
    (
        "warm-start-no-completed-trials",
        lambda r: write_experiment(r / "failed", methods=("npo",), trials=2, outcomes=FAILED),
        [*SWEEP, "--warm-start", "{root}/failed"],
        "its npo study has no completed trials",
    ),
    (
        "warm-start-itself",
        None,
        [*SWEEP, "--output", "{root}", "--name", "exp", "--warm-start", "{exp}"],
        "is this experiment; give an earlier one",
    ),
    (
        "warm-start-grid",
        None,
        [*SWEEP, "--sampler", "grid", "--warm-start", "{exp}"],
        "a grid evaluates its own 27 points",
    ),
    ("resume-trials-below-run", None, ["resume", "{exp}", "--trials", "2"], "has run 3 trials"),
    ("resume-trials-zero", None, ["resume", "{exp}", "--trials", "0"], "must be >= 1, got 0"),
]
YAML = [
    ("yaml-billion-laughs", yaml_file(BILLION), ["sweep", "--config", "in.yaml"], "aliases"),
    ("yaml-deep", yaml_file(DEEP), ["sweep", "--config", "in.yaml"], "nested deeper than 20"),
    (
        "yaml-utf16",
        yaml_file("method: npo\n".encode("utf-16")),
        ["sweep", "--config", "in.yaml"],
        "is not UTF-8 text",
    ),
    ("yaml-binary", yaml_file(bytes(range(256))), ["sweep", "--config", "in.yaml"], "not UTF-8"),
    (
        "yaml-duplicate",
        yaml_file("method: npo\ntrials: 2\ntrials: 3\n"),
        ["sweep", "--config", "in.yaml"],
        "line 3: duplicate key 'trials'",
    ),
    (
        "yaml-method-int",
        yaml_file("method: 5\n"),
        ["sweep", "--config", "in.yaml"],
        "method must be a method name or a list of them, got 5",
    ),
    (
        "yaml-name-int",
        yaml_file("method: npo\nname: 7\n"),
        ["sweep", "--config", "in.yaml"],
        "name must be str, got 7",
    ),
    (
        "yaml-benchmark-list",
        yaml_file("method: npo\nbenchmark: [a]\n"),
        ["sweep", "--config", "in.yaml"],
        "benchmark must be str, got ['a']",
    ),
    (
        "yaml-space-list",
        yaml_file("method: npo\nspace: [1, 2]\n"),
        ["sweep", "--config", "in.yaml"],
        "space must be a mapping",
    ),
    (
        "yaml-trials-bool",
        yaml_file("method: npo\ntrials: true\n"),
        ["sweep", "--config", "in.yaml"],
        "trials must be int, got True",
    ),
    (
        "yaml-cpus-nan",
        yaml_file("method: npo\ncpus_per_trial: .nan\n"),
        ["sweep", "--config", "in.yaml"],
        "cpus_per_trial must be a finite number",
    ),
    (
        "yaml-key-int",
        yaml_file("method: npo\n1: 2\n"),
        ["sweep", "--config", "in.yaml"],
        "key 1 is not a name",
    ),
    (
        "yaml-too-big",
        yaml_file("method: npo\n#" + "x" * (2 << 20) + "\n"),
        ["sweep", "--config", "in.yaml"],
        "larger than 1 MiB",
    ),
    (
        "yaml-anchor-only",
        yaml_file("method: &m npo\n"),
        ["sweep", "--config", "in.yaml"],
        "anchors and aliases",
    ),
    (
        "export-lr-bool",
        export_file(train__lr=True),
        ["unlearn", "--config", "best.yaml"],
        "lr must be float, got True",
    ),
    (
        "export-lr-inf",
        export_file(train__lr=float("inf")),
        ["unlearn", "--config", "best.yaml"],
        "lr must be a finite number",
    ),
    (
        "export-epochs-float",
        export_file(train__epochs=1.5),
        ["unlearn", "--config", "best.yaml"],
        "epochs must be int, got 1.5",
    ),
    (
        "export-method-int",
        export_file(method=5),
        ["unlearn", "--config", "best.yaml"],
        "method must be str, got 5",
    ),
    (
        "export-beta-bool",
        export_file(hparams__beta=True),
        ["unlearn", "--config", "best.yaml"],
        "beta must be float, got True",
    ),
    (
        "export-seed-negative",
        export_file(train__seed=-1),
        ["unlearn", "--config", "best.yaml"],
        "seed must be in 0..2**32-1",
    ),
    (
        "export-duplicate",
        yaml_file("method: npo\nmethod: npo\n", "best.yaml"),
        ["unlearn", "--config", "best.yaml"],
        "duplicate key 'method'",
    ),
    (
        "export-alias",
        yaml_file(BILLION, "best.yaml"),
        ["unlearn", "--config", "best.yaml"],
        "aliases",
    ),
    (
        "export-not-utf8",
        yaml_file(b"method: \xff\n", "best.yaml"),
        ["unlearn", "--config", "best.yaml"],
        "is not UTF-8 text",
    ),
]
MODELS = [
    (
        "sweep-auto-map",
        custom_code(),
        [*SWEEP, "--model", "{root}/model"],
        "needs its own code (config.json has auto_map",
    ),
    (
        "sweep-retain-auto-map",
        custom_code(),
        [*SWEEP, "--retain-model", "{root}/model"],
        "sweeps never run a model's own code",
    ),
    (
        "unlearn-auto-map",
        custom_code(),
        [*UNLEARN, "--model", "{root}/model"],
        "pass --trust-remote-code if you trust that code",
    ),
    (
        "unlearn-tokenizer-auto-map",
        custom_code("tokenizer_config.json"),
        [*UNLEARN, "--model", "{root}/model"],
        "tokenizer_config.json has auto_map",
    ),
    (
        "evaluate-auto-map",
        custom_code(),
        ["evaluate", "--model", "{root}/model", "--benchmark", "tiny-tofu-small"],
        "pass --trust-remote-code",
    ),
]
DAMAGED = [
    (
        "manifest-sweep-not-mapping",
        manifest(lambda d: d["sweeps"].__setitem__(0, 5)),
        ["analyze", "{exp}"],
        "sweep 1 is not a mapping",
    ),
    (
        "manifest-sweep-no-method",
        manifest(lambda d: d["sweeps"][0].pop("method")),
        ["status", "{exp}"],
        "sweep 1 has method None",
    ),
    (
        "manifest-method-path",
        manifest(lambda d: d["sweeps"][0].update(method="../../x")),
        ["status", "{exp}"],
        "names method '../../x'",
    ),
    (
        "manifest-objectives-str",
        manifest(lambda d: d["sweeps"][0].update(objectives="ab")),
        ["analyze", "{exp}"],
        "has objectives 'ab', not a list",
    ),
    (
        "manifest-trials-str",
        manifest(lambda d: d["sweeps"][0].update(trials="2")),
        ["status", "{exp}"],
        "has trials '2', not a int",
    ),
    (
        "manifest-defaults-list",
        manifest(lambda d: d.update(defaults=[1])),
        ["analyze", "{exp}"],
        "defaults must map each method",
    ),
    (
        "manifest-resume-bad-sweep",
        manifest(lambda d: d["sweeps"].__setitem__(0, [])),
        ["resume", "{exp}"],
        "sweep 1 is not a mapping",
    ),
    (
        "manifest-not-utf8-analyze",
        lambda r: write(r, "exp/unlearn_sweep.json", b"\x80\xfe"),
        ["analyze", "{exp}"],
        "unlearn_sweep.json is corrupted",
    ),
    (
        "manifest-export",
        manifest(lambda d: d["sweeps"][0].update(batch_size=None)),
        ["export", "{exp}", "--rule", "knee"],
        "has batch_size None",
    ),
    (
        "results-not-utf8",
        lambda r: write(r, "exp/results/npo.jsonl", b'{"a": 1}\n\xff\xfe\n'),
        ["analyze", "{exp}"],
        "npo.jsonl is damaged: not UTF-8 text",
    ),
    (
        "results-not-json",
        lambda r: write(r, "exp/results/npo.jsonl", "nope\n{}\n"),
        ["export", "{exp}", "--rule", "knee"],
        "line 1 is not JSON",
    ),
    (
        "target-not-json",
        lambda r: write(r, "exp/reference/target-tiny-tofu-small-forget10.json", "{"),
        ["analyze", "{exp}"],
        "is damaged",
    ),
    (
        "target-a-list",
        lambda r: write(r, "exp/reference/target-tiny-tofu-small-forget10.json", "[1]"),
        ["export", "{exp}", "--rule", "knee"],
        "damaged",
    ),
    (
        "retain-strings",
        lambda r: write(
            r, "exp/reference/retain-tiny-tofu-small-forget10.json", '{"model_utility": "x"}'
        ),
        ["analyze", "{exp}"],
        "not a JSON object of metric values",
    ),
    (
        "target-resume",
        lambda r: write(
            r, "exp/reference/target-tiny-tofu-small-forget10.json", '{"model_utility": true}'
        ),
        ["resume", "{exp}"],
        "remove it and `resume` computes it again",
    ),
    (
        "journal-garbage",
        lambda r: write(r, "exp/optuna/npo.journal", "\x00garbage\n"),
        ["status", "{exp}"],
        "cannot read",
    ),
    (
        "journal-garbage-analyze",
        lambda r: write(r, "exp/optuna/npo.journal", "{]\n"),
        ["analyze", "{exp}"],
        "cannot read",
    ),
]
WRITES = [
    (
        "analyze-folder-is-file",
        lambda r: write(r, "exp/analysis", "a file"),
        ["analyze", "{exp}"],
        "a file, not a folder); the experiment is unchanged; give --output",
    ),
    (
        "analyze-output-is-file",
        None,
        ["analyze", "{exp}", "--output", "{root}/afile/x"],
        "a file, not a folder",
    ),
    (
        "analyze-disk-full",
        oserror("tempfile:mkstemp", errno.ENOSPC),
        ["analyze", "{exp}"],
        "No space left on device); the experiment is unchanged",
    ),
    (
        "analyze-read-only",
        oserror("tempfile:mkstemp", errno.EROFS),
        ["analyze", "{exp}"],
        "Read-only file system); the experiment is unchanged",
    ),
    (
        "analyze-full-mid-report",
        oserror("analysis.report:write_report", errno.ENOSPC, "{exp}/report.md"),
        ["analyze", "{exp}"],
        "report.md (No space left on device); the experiment's own files are unchanged",
    ),
    (
        "export-best-is-file",
        lambda r: write(r, "exp/best", "a file"),
        ["export", "{exp}", "--rule", "knee"],
        "cannot write the exported configs",
    ),
    (
        "export-permission",
        oserror("tempfile:mkstemp", errno.EACCES),
        ["export", "{exp}", "--rule", "knee"],
        "Permission denied",
    ),
    (
        "sweep-disk-full",
        oserror("sweeps.launch:run_sweep", errno.ENOSPC),
        [*SWEEP, "--output", "{root}", "--name", "new"],
        "experiment was not started: remove",
    ),
    (
        "resume-disk-full",
        oserror("sweeps.launch:resume_sweep", errno.ENOSPC),
        ["resume", "{exp}"],
        "while writing Ray's experiment state and checkpoints; the finished "
        "trials are kept and the experiment can be resumed",
    ),
    (
        "resume-read-only",
        oserror("sweeps.launch:resume_sweep", errno.EROFS, "{exp}/results/npo.jsonl"),
        ["resume", "{exp}"],
        "while writing the trial results; the finished trials are kept",
    ),
    ("sweep-output-is-file", None, [*SWEEP, "--output", "{root}/afile"], "is a file, not a"),
]
TABLE = VALUES + YAML + MODELS + DAMAGED + WRITES


def test_the_table_covers_every_category():
    assert len(TABLE) >= 60 and all(len(c) >= 4 for c in (VALUES, YAML, MODELS, DAMAGED, WRITES))
    assert len({c[0] for c in TABLE}) == len(TABLE)


@pytest.mark.parametrize("prepare,args,message", [c[1:] for c in TABLE], ids=[c[0] for c in TABLE])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    prepare, args, message, root, monkeypatch, capsys
):
    from unlearn_sweep.cli import main

    if prepare is not None:
        if prepare.__code__.co_argcount == 2:
            prepare(root, monkeypatch)
        else:
            prepare(root)
    monkeypatch.chdir(root)
    before = snapshot(root)
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(LIMIT_S)
    try:
        code = main([a.format(root=root, exp=root / "exp") for a in args])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], lines[0]
    assert snapshot(root) == before
    assert not Path("/tmp/pwned-by-bad-input").exists()


def test_lines_that_are_not_result_rows_are_skipped_and_counted(root, caplog):
    from analysis.load import load

    with (root / "exp" / "results" / "npo.jsonl").open("a") as f:
        f.write(NOT_A_ROW + '{"event": "result", "trial_id": "t", "run": {"epoch": "x"}}\n')
        f.write('{"event": "result", "trial_id": "t", "metrics": {"forget_quality": "high"}}\n')
    before, _ = load([write_experiment(root / "again", methods=("npo",), trials=3)])
    rows, _ = load([root / "exp"])
    assert len(rows) == len(before)
    assert "skipped 4 line(s) that are not result rows\n" in caplog.text


def test_a_list_parameter_is_a_row_and_a_nested_one_is_not():
    """RMU's space returns trainable_layers as a list: its rows are rows (the demo's RMU front
    was empty while they were skipped); a mapping inside params is still refused."""
    from analysis.load import _is_row

    row = {"event": "result", "trial_id": "t", "method": "rmu", "run": {"epoch": 1}}
    row |= {"objectives": {"model_utility": 0.7}, "metrics": {"model_utility": 0.7}}
    assert _is_row(row | {"params": {"lr": 1e-3, "trainable_layers": [0, 1]}})
    assert not _is_row(row | {"params": {"lr": 1e-3, "trainable_layers": {"a": 1}}})
    assert not _is_row(row | {"params": {"lr": [[1e-3]]}})


def test_a_resumed_driver_reads_past_a_cut_or_foreign_results_line(tmp_path, monkeypatch):
    """ResultsLog learns which trials already ended from the results log; a line a killed
    driver cut off, or one that is not a row, must not stop the resumed sweep, and the cut line
    is dropped before the next row is appended (it would join it)."""
    from types import SimpleNamespace

    from sweeps.callbacks import ResultsLog
    from sweeps.relocate import EXPERIMENT_ENV

    monkeypatch.setenv(EXPERIMENT_ENV, str(tmp_path))
    log = tmp_path / "results" / "npo.jsonl"
    log.parent.mkdir()
    done = {"event": "complete", "trial_id": "a", "method": "npo", "params": {}}
    log.write_text(
        json.dumps(done) + '\n[1, 2]\n{"event": "complete", "trial_id": 7}\n{"event": "comp'
    )
    cb = ResultsLog("results/npo.jsonl", "npo")
    for trial_id in ("a", "b"):
        cb.on_trial_complete(0, [], SimpleNamespace(trial_id=trial_id, config={}))
    lines = log.read_text().splitlines()
    assert [json.loads(ln)["trial_id"] for ln in lines if "complete" in ln][-1] == "b"
    assert log.read_text().count('"trial_id": "a"') == 1 and '"comp\n' not in log.read_text()


def test_rows_in_the_flat_format_of_an_older_version_are_skipped_with_one_line(root, caplog):
    """Before sectioned rows (params, objectives, metrics, run) a row held its metrics and
    bookkeeping side by side: such lines are skipped, counted and named, never read as rows."""
    from analysis.load import load

    flat = {"event": "result", "trial_id": "t", "method": "npo", "params": {"lr": 1e-3}}
    flat |= {"forget_quality": 0.5, "model_utility": 0.8, "epoch": 1, "wall_time_s": 2.0}
    end = {"event": "complete", "trial_id": "t", "method": "npo", "params": {}, "time": 1.8e9}
    with (root / "exp" / "results" / "npo.jsonl").open("a") as f:
        f.write(json.dumps(flat) + "\n" + json.dumps(end) + "\n")
    before, _ = load([write_experiment(root / "again", methods=("npo",), trials=3)])
    rows, _ = load([root / "exp"])
    assert len(rows) == len(before) and "t" not in set(rows["trial_id"])
    (line,) = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert "skipped 2 line(s) that are not result rows (2 in the flat format" in line
    assert "\n" not in line


@pytest.mark.slow
def test_a_full_disk_mid_sweep_is_one_line_and_resume_finishes(tmp_path):
    """The one real-Ray case: the sweep's --output is a tmpfs that the test fills to the last
    byte once the first trial has reported, so the next write (Ray's state, saved each second, a
    results row, a trial's checkpoint) fails whoever makes it; the driver ends with one line (no
    traceback, not even Ray's log of a failed trial hook) saying the sweep can be resumed, and
    once the disk has room `resume` finishes both trials. (Letting the trials fill a tiny disk
    themselves was flaky: a small write could still fit in its last page.)"""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)]
    if subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("needs a tmpfs mount (root)")
    args = [*SWEEP, "--fix", "epochs=1", "--max-concurrent", "1", "--output", str(disk)]
    cmd = [sys.executable, "-m", "unlearn_sweep", *args, "--name", "fd"]
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        results = disk / "fd" / "results" / "npo.jsonl"
        deadline = time.monotonic() + 600
        while proc.poll() is None and not results.is_file() and time.monotonic() < deadline:
            time.sleep(0.2)
        fill = ["dd", "if=/dev/zero", f"of={disk / 'filler'}", "bs=64k"]
        subprocess.run(fill, capture_output=True)  # ends when the disk is full
        _, err = proc.communicate(timeout=600)
        errors = [ln for ln in err.splitlines() if ln.startswith("error: ")]
        assert proc.returncode == 2 and "Traceback" not in err, err[-3000:]
        assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0]
        assert "No space left on device" in errors[0] and "can be resumed" in errors[0]
        (disk / "filler").unlink()
        out = subprocess.run(
            [sys.executable, "-m", "unlearn_sweep", "resume", str(disk / "fd")],
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        assert "npo: 2 complete, 0 running, 0 failed" in out.stdout
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_analyze_output_writes_elsewhere_and_leaves_the_experiment_as_it_was(root, capsys):
    from unlearn_sweep.cli import main

    (root / "exp" / "analysis").write_text("a file where the plots go: the folder is not ours")
    before = snapshot(root / "exp")
    assert main(["analyze", str(root / "exp"), "--output", str(root / "out")]) == 0
    assert (root / "out" / "report.md").is_file() and (root / "out" / "analysis").is_dir()
    assert snapshot(root / "exp") == before
    assert str(root / "out" / "report.md") in capsys.readouterr().out
