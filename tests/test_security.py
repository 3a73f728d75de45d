"""Security and bad inputs (issue 8): remote code only on request, YAML safe-loaded with unknown
keys rejected, experiment folders opened only with a valid manifest, corrupted journals and
checkpoints named in one line, no secret from the environment in any file a sweep, analysis or
export writes, and a table of bad paths and resources that leave an existing experiment as is."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from conftest import SECRETS

SWEEP = ["sweep", "--method", "npo", "--benchmark", "tiny-tofu-small", "--trials", "2"]


def run_main(args: list[str], capsys) -> tuple[int, list[str], str]:
    """The CLI in process (one start-up for many cases); -> (exit code, stderr lines, stdout)."""
    from unlearn_sweep.cli import main

    try:
        code = main(args)
    finally:
        import ray

        ray.shutdown()
    out = capsys.readouterr()
    return code, out.err.strip().splitlines(), out.out


def snapshot(folder: Path) -> dict[str, str]:
    """Every file's hash and every folder, by path relative to `folder`."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = str(p.relative_to(folder))
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


@pytest.fixture(scope="module")
def experiment(small_sweep):
    """The shared 2-trial sweep (run with secrets in its environment), analysed and exported
    with the secrets set too."""
    from unlearn_sweep.cli import main

    home, console = small_sweep
    with pytest.MonkeyPatch.context() as mp:
        for k, v in SECRETS.items():
            mp.setenv(k, v)
        assert main(["analyze", str(home)]) == 0
        assert main(["export", str(home), "--rule", "knee"]) == 0
    return home, console


@pytest.fixture
def copy(experiment, tmp_path):
    """A private copy of the experiment in tmp_path/root, next to a plain file."""
    root = tmp_path / "root"
    shutil.copytree(experiment[0], root / "exp")
    (root / "afile").write_text("not a folder")
    return root


def test_no_secret_in_any_written_file(experiment):
    home, console = experiment
    files = [p for p in home.rglob("*") if p.is_file()]
    assert {"report.md", "npo.yaml", "tuner.pkl", "params.pkl", "state.pt"} <= {
        p.name for p in files
    }
    for p in files:
        data = p.read_bytes()
        for secret in SECRETS.values():
            assert secret.encode() not in data, f"{secret} leaked into {p}"
    assert not any(s in console for s in SECRETS.values())


def test_workers_get_only_the_allow_listed_environment(monkeypatch):
    from sweeps.launch import env_for_workers

    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("UNLEARN_SWEEP_CACHE", "/cache")
    env = env_for_workers()
    assert env["UNLEARN_SWEEP_CACHE"] == "/cache"
    assert not set(SECRETS) & set(env)


class Stop(Exception):
    """Raised by a stand-in to end a command once it has shown what it would load."""


def test_models_load_without_remote_code_by_default(monkeypatch, small_benchmark):
    import transformers

    import unlearn_core.models as models

    seen = []

    def record(*args, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        raise Stop

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", record)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", record)
    target = str(small_benchmark["target"])
    assert models.ModelConfig(target).trust_remote_code is False
    for call in (
        lambda: models.load_model(models.ModelConfig(target)),
        lambda: models.load_tokenizer(target),
    ):
        with pytest.raises(Stop):
            call()
    assert seen == [False, False]


def test_cli_passes_trust_remote_code_only_when_given(monkeypatch, small_benchmark):
    import unlearn_core.job
    from sweeps.config import SweepConfig, make_job
    from unlearn_core.source import Source
    from unlearn_sweep.cli import main

    seen = []

    def stop(*args, **kwargs):  # stands in for run_job(job, ...) and evaluate_model(..., trust_...)
        seen.append(
            kwargs["trust_remote_code"]
            if "trust_remote_code" in kwargs
            else args[0].trust_remote_code
        )
        raise Stop

    monkeypatch.setattr(unlearn_core.job, "run_job", stop)
    monkeypatch.setattr(unlearn_core.job, "evaluate_model", stop)
    target = str(small_benchmark["target"])
    for command in (["unlearn", "--method", "npo"], ["evaluate"]):
        for flags in ([], ["--trust-remote-code"]):
            with pytest.raises(Stop):
                main([*command, "--model", target, *flags])
    assert seen == [False, True, False, True]
    # a sweep has no such flag: its trials never run a model repository's code
    sweep = SweepConfig(method="npo", source=Source("tiny-tofu-small", model=target))
    params = {"lr": 1e-3, "epochs": 1, "warmup_epochs": 0.0, "weight_decay": 0.0}
    assert make_job(sweep, params, 0, None).trust_remote_code is False


def test_remote_code_flag_is_refused_by_sweep(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, err, _ = run_main([*SWEEP, "--trust-remote-code"], capsys)
    assert code == 2 and len(err) == 1 and "unrecognized arguments" in err[0]


EVIL = '!!python/object/apply:os.system ["touch {marker}"]'


@pytest.mark.parametrize("command", ["sweep", "unlearn"])
@pytest.mark.parametrize(
    "doc,message",
    [
        (f"method: npo\ntrials: {EVIL}\n", "could not determine a constructor"),
        (f"{EVIL}\n", "could not determine a constructor"),
        ("method: npo\ntrials: 2\nshell: rm -rf /\n", "unknown key 'shell'"),
    ],
    ids=["object-in-value", "object-document", "unknown-key"],
)
def test_yaml_is_safe_loaded_and_strict(command, doc, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    marker = tmp_path / "pwned"
    (tmp_path / "evil.yaml").write_text(doc.format(marker=marker))
    before = snapshot(tmp_path)
    code, err, _ = run_main([command, "--config", "evil.yaml"], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    if command == "sweep" or "unknown" not in message:
        assert message in err[0], err
    else:  # an exported config names its own keys
        assert "is not an exported config" in err[0], err
    assert not marker.exists()
    assert snapshot(tmp_path) == before


MANIFESTS = {
    "missing": (None, "is not an unlearn-sweep experiment (no unlearn_sweep.json)"),
    "not-json": ("{not json", "unlearn_sweep.json is corrupted"),
    "not-text": (b"\x80\x81\xfe", "unlearn_sweep.json is corrupted"),
    "wrong-tool": ('{"tool": "other", "sweeps": []}', "is not an unlearn-sweep manifest"),
    "a-list": ('["unlearn-sweep"]', "is not an unlearn-sweep manifest"),
}


@pytest.mark.parametrize("command", ["resume", "status", "analyze"])
@pytest.mark.parametrize("kind", list(MANIFESTS))
def test_folders_without_a_valid_manifest_are_refused(command, kind, tmp_path, capsys):
    if command == "analyze" and kind == "not-text":
        pytest.skip("analysis/load.py reads the manifest as text: a UnicodeDecodeError escapes")
    content, message = MANIFESTS[kind]
    home = tmp_path / "exp"
    (home / "results").mkdir(parents=True)
    (home / "results" / "npo.jsonl").write_text("{}\n")
    if content is not None:
        path = home / "unlearn_sweep.json"
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    before = snapshot(tmp_path)
    code, err, _ = run_main([command, str(home)], capsys)
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert snapshot(tmp_path) == before


def test_manifest_with_an_invalid_sweep_is_refused(copy, capsys):
    path = copy / "exp" / "unlearn_sweep.json"
    manifest = json.loads(path.read_text())
    manifest["sweeps"][0]["shell"] = "rm -rf /"
    path.write_text(json.dumps(manifest))
    before = snapshot(copy)
    code, err, _ = run_main(["resume", str(copy / "exp")], capsys)
    assert code == 2 and len(err) == 1 and "holds an invalid sweep" in err[0], err
    assert snapshot(copy) == before


def corrupt_journal(root: Path) -> None:
    path = root / "exp" / "optuna" / "npo.journal"
    lines = path.read_text().splitlines(keepends=True)
    lines[2] = '{"op_code": 5, "trial_id": \n'  # a line cut short in the middle of the log
    path.write_text("".join(lines))


def corrupt_checkpoint(root: Path) -> None:
    """As a driver killed mid-trial leaves it (the trial still RUNNING in Ray's state), with
    that trial's latest checkpoint cut short."""
    exp_dir = root / "exp" / "ray" / "npo"
    (path,) = exp_dir.glob("experiment_state-*.json")
    state = json.loads(path.read_text())
    trial = json.loads(state["trial_data"][0][0])
    last = json.loads(state["trial_data"][0][1])["last_result"]
    trial["status"] = "RUNNING"
    state["trial_data"][0][0] = json.dumps(trial)
    path.write_text(json.dumps(state))
    ckpt = exp_dir / trial["relative_logdir"] / last["checkpoint_dir_name"] / "state.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])


NO_CPUS = "but the cluster has"
BAD_INPUTS = [
    ("journal-resume", corrupt_journal, ["resume", "{exp}"], "optuna/npo.journal: "),
    ("journal-status", corrupt_journal, ["status", "{exp}"], "optuna/npo.journal: "),
    ("checkpoint-resume", corrupt_checkpoint, ["resume", "{exp}"], "state.pt of unfinished trial"),
    (
        "output-unwritable",
        None,
        [*SWEEP, "--output", "/proc/nope"],
        "--output '/proc/nope' is not writable",
    ),
    ("output-is-a-file", None, [*SWEEP, "--output", "{root}/afile"], "afile' is a file, not a"),
    (
        "experiment-is-a-file",
        None,
        [*SWEEP, "--output", "{root}", "--name", "afile"],
        "afile is a file; choose another --name or --output",
    ),
    ("resume-a-file", None, ["resume", "{root}/afile"], "afile is not a folder"),
    ("status-a-file", None, ["status", "{root}/afile"], "afile is not a folder"),
    ("analyze-a-file", None, ["analyze", "{root}/afile"], "afile is not a folder"),
    ("export-a-file", None, ["export", "{root}/afile", "--rule", "knee"], "is not a folder"),
    (
        "sweep-into-experiment",
        None,
        [*SWEEP, "--output", "{root}", "--name", "exp"],
        "exists with a different configuration",
    ),
    (
        "cpus-more-than-cluster",
        None,
        [*SWEEP, "--output", "{root}", "--cpus-per-trial", "512"],
        f"--cpus-per-trial 512.0 {NO_CPUS}",
    ),
    (
        "cpus-zero",
        None,
        [*SWEEP, "--output", "{root}", "--cpus-per-trial", "0"],
        "cpus_per_trial must be > 0",
    ),
    (
        "gpus-negative",
        None,
        [*SWEEP, "--output", "{root}", "--gpus-per-trial", "-1"],
        "gpus_per_trial >= 0",
    ),
    (
        "max-concurrent-negative",
        None,
        [*SWEEP, "--output", "{root}", "--max-concurrent", "-1"],
        "max_concurrent must be >= 0",
    ),
    (
        "max-failures",
        None,
        [*SWEEP, "--output", "{root}", "--max-failures", "-2"],
        "max_failures >= -1",
    ),
    (
        "keep-no-checkpoint",
        None,
        [*SWEEP, "--output", "{root}", "--keep-checkpoints", "0"],
        "keep_checkpoints must be >= 1",
    ),
]


@pytest.mark.parametrize(
    "prepare,args,message", [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS]
)
def test_bad_inputs_leave_the_experiment_as_it_was(
    prepare, args, message, copy, monkeypatch, capsys
):
    if prepare is not None:
        prepare(copy)
    monkeypatch.chdir(copy)
    before = snapshot(copy)
    code, err, _ = run_main([a.format(root=copy, exp=copy / "exp") for a in args], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert message in err[0], err
    assert snapshot(copy) == before


def test_status_reads_past_a_corrupted_checkpoint(copy, capsys):
    corrupt_checkpoint(copy)  # status reads only the study: it still reports
    code, _, out = run_main(["status", str(copy / "exp")], capsys)
    assert code == 0 and "npo: 2 complete, 0 running, 0 failed" in out


@pytest.mark.parametrize(
    "command,link",
    [
        (["analyze"], "analysis"),
        (["analyze"], "report.md"),
        (["analyze"], "analysis/plotly.min.js"),
        (["export", "--rule", "knee"], "best"),
        (["export", "--rule", "knee"], "best/npo.yaml"),
    ],
)
def test_outputs_never_follow_a_symlink_out_of_the_experiment(
    command, link, copy, tmp_path, capsys
):
    """Issue 19: a symlinked output folder or file is refused in one line before anything is
    written; what it points to outside the experiment stays as it was, byte for byte."""
    home, outside = copy / "exp", tmp_path / "outside"
    outside.mkdir()
    for name in ("npo.yaml", "pareto.png", "report.md", "plotly.min.js"):
        (outside / name).write_text(f"the user's own {name}\n")
    path = home / link
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    path.symlink_to(outside if "." not in link else outside / Path(link).name)
    before = snapshot(outside)
    code, err, _ = run_main([command[0], str(home), *command[1:]], capsys)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    assert f"{path} is a symlink" in err[0], err
    assert snapshot(outside) == before
