"""Clusters without a shared disk (issue 15, item 3), on a two-node Ray cluster on loopback
(`ray.cluster_utils.Cluster`: a head node with no CPU for trials and a worker node) joined with
--address, and --storage a folder apart from the experiment (the shared or cloud storage): every
trial ends in the study and the results while no process the cluster's nodes start opens, lists,
creates or removes anything in the experiment folder (an audit hook in each of them); the worker
node killed mid-sweep and a fresh one added loses no trial (Ray retries them from their
checkpoints in the storage); a cluster of another Ray version is refused in one line, exit 2,
nothing written. Without Ray: the reference a trial gets is the driver's, copied on its node,
and a sweep joining several nodes without --storage is warned that their disks are their own."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState

from sweeps.experiment import is_epoch_point
from sweeps.relocate import digest, node_copy
from sweeps.trainable import trial_spec
from unlearn_core.tofu_eval import RetainReference

REPO = Path(__file__).resolve().parents[1]
WATCH, AUDIT = "UNLEARN_TEST_AUDIT_WATCH", "UNLEARN_TEST_AUDIT_LOG"

# Imported by every Python process the cluster's nodes start (their PYTHONPATH leads with its
# folder): records each audited file-system event on a path under a watched folder. os.stat has
# no audit event, so existence checks go unrecorded; opens, listings, mkdir, rename, remove are.
SITECUSTOMIZE = f"""
import os, sys

_roots = [r for r in os.environ.get({WATCH!r}, "").split(os.pathsep) if r]
_log = os.environ.get({AUDIT!r})
_busy = []


# the environment and new processes name paths without touching them
_NOT_FILES = ("os.putenv", "os.unsetenv", "os.exec", "os.posix_spawn", "os.spawn", "os.system")


def _hook(event, args):
    if _busy or not (event == "open" or event.startswith(("os.", "shutil.", "glob."))):
        return
    if event.startswith(_NOT_FILES):
        return
    for arg in args:
        if not isinstance(arg, (str, bytes, os.PathLike)):
            continue
        try:
            path = os.path.abspath(os.fsdecode(arg))
        except (TypeError, ValueError):
            continue
        for root in _roots:
            if path == root or path.startswith(root + os.sep):
                _busy.append(1)
                try:
                    with open(_log, "a") as f:
                        f.write(f"{{os.getpid()}} {{event}} {{path}}\\n")
                finally:
                    _busy.clear()
                return


if _roots and _log:
    sys.addaudithook(_hook)
"""


POINT = {"lr": 1e-4, "warmup_epochs": 0.0, "weight_decay": 0.0, "epochs": 2, "beta": 0.1}


def test_a_trial_reads_the_reference_it_was_given_from_its_nodes_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARN_SWEEP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("UNLEARN_SWEEP_EXPERIMENT", str(tmp_path / "not-here"))
    content = {"split": "forget01", "forget_truth_ratio": [0.25, 0.5], "mia_min_k": 0.5}
    path = node_copy(content)
    assert path.is_relative_to(tmp_path / "cache") and json.loads(path.read_text()) == content
    assert node_copy(dict(content)) == path and list(path.parent.iterdir()) == [path]
    ref = RetainReference.load(path, "forget01")
    assert ref.forget_truth_ratio.tolist() == [0.25, 0.5] and ref.mia_min_k == 0.5
    other = {**content, "mia_min_k": 0.75}
    assert digest(other) != digest(content) and node_copy(other) != path
    config = {
        "sweep": {"method": "npo", "source": {"benchmark": "tiny-tofu-small", "split": "forget01"}},
        "reference": "reference/tofu-forget01.json",  # as experiments made before stored it
        "utility_floor": 0.25,
        **POINT,
    }
    spec = trial_spec(config, content)
    assert spec.job(0).reference == str(path) and spec.params == POINT
    assert not (tmp_path / "not-here").exists()  # the driver's folder was never made or opened


def test_several_nodes_without_storage_are_warned_of(monkeypatch, caplog):
    import ray

    from sweeps.launch import warn_unshared

    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}, {"Alive": False}])
    warn_unshared("/exp/ray")
    assert not caplog.records  # one live node: its own disk is the driver's
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": True}, {"Alive": True}])
    warn_unshared("/exp/ray")
    (record,) = caplog.records
    assert record.levelname == "WARNING" and "2 nodes and no --storage" in record.getMessage()
    assert "/exp/ray" in record.getMessage()


# --- a real cluster ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def killed_sweep(tmp_path_factory):
    """A sweep of 2 trials through --address on the two-node cluster, whose worker node is killed
    once a trial has its first checkpoint and replaced by a fresh one.
    -> (tmp, the driver's run, the trials that had a checkpoint when the node died)."""
    tmp = tmp_path_factory.mktemp("cluster")
    nodes, driver_env = start_cluster(tmp)
    try:
        address = json.loads(nodes.stdout.readline())["address"]
        driver = subprocess.Popen(
            sweep_args(address, tmp, 2),
            env=driver_env,
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        saved = wait_for_checkpoint(tmp / "shared" / "npo", driver)
        nodes.stdin.write("replace\n")
        nodes.stdin.flush()
        assert json.loads(nodes.stdout.readline()) == {"replaced": True}
        out, err = driver.communicate(timeout=900)
        yield tmp, subprocess.CompletedProcess(driver.args, driver.returncode, out, err), saved
    finally:
        nodes.stdin.close()
        nodes.wait(timeout=120)


def start_cluster(tmp: Path) -> tuple[subprocess.Popen, dict[str, str]]:
    """The two-node cluster's process (tests/loopback_cluster.py; it prints its address first),
    on loopback with a token, the audit hook in every process its nodes start; and the
    environment of a driver for it, without the hook."""
    hooks = tmp / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    driver_env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        # loopback, as the private cluster (sweeps/cluster.py): without single-machine mode Ray
        # "resolves" 127.0.0.1 to the outward address, where nothing listens
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    # the trials' copies of the reference (sweeps/relocate.py node_copy): what shows the hook ran
    copies = Path(os.environ["UNLEARN_SWEEP_CACHE"]) / "references"
    node_env = {
        **driver_env,
        "PYTHONPATH": os.pathsep.join([str(hooks), str(REPO)]),
        WATCH: os.pathsep.join([str(tmp / "out"), str(copies)]),
        AUDIT: str(tmp / "audit.log"),
    }
    nodes = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "loopback_cluster.py")],
        env=node_env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    return nodes, driver_env


def wait_for_checkpoint(storage: Path, driver: subprocess.Popen) -> set[str]:
    """The Ray ids of the trials with a checkpoint in the storage, once there is one."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and driver.poll() is None:
        saved = {p.parent.name.split("_")[1] for p in storage.glob("trainable_*/checkpoint_*")}
        if saved:
            return saved
        time.sleep(0.2)
    raise AssertionError(f"no trial saved a checkpoint (driver exit {driver.poll()})")


def sweep_args(address: str, tmp: Path, trials: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "unlearn_sweep",
        "sweep",
        "--benchmark",
        "tiny-tofu-small",
        "--split",
        "forget01",
        "--method",
        "npo",
        "--fix",
        "epochs=2",
        "--trials",
        str(trials),
        "--utility-floor",
        "0",  # every trial trains both epochs
        "--address",
        address,
        "--storage",
        str(tmp / "shared"),
        "--output",
        str(tmp / "out"),
        "--name",
        "exp",
    ]


def told(home: Path) -> list:
    from sweeps import experiment

    return [t for t in experiment.load_study(home, "npo").trials if not is_epoch_point(t)]


def results(home: Path) -> list[dict]:
    return [json.loads(line) for line in (home / "results" / "npo.jsonl").open()]


def touched(log: Path) -> list[tuple[str, str]]:
    """(event, path) of each audited event in the nodes' processes."""
    lines = log.read_text().splitlines() if log.exists() else []
    return [tuple(line.split(" ", 2)[1:]) for line in lines]


@pytest.mark.slow
def test_a_sweep_whose_worker_node_dies_loses_no_trial(killed_sweep):
    tmp, run, saved = killed_sweep
    assert run.returncode == 0, run.stderr[-3000:]
    home = tmp / "out" / "exp"
    trials = told(home)
    assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials)
    ids = {t.user_attrs["ray_trial_id"] for t in trials}
    rows = results(home)
    evaluated = [r for r in rows if r["event"] == "result" and "objectives" in r]
    assert {r["trial_id"] for r in evaluated} == ids
    for tid in ids:  # each trial's both epochs, in the study and the results
        assert {r["run"]["epoch"] for r in evaluated if r["trial_id"] == tid} == {1, 2}
    retried = {r["trial_id"] for r in rows if r["event"] == "retry"}
    assert saved <= retried and saved <= ids  # the node died under them, they ran again
    for tid in saved:  # from the checkpoint in the storage: epoch 1 was not trained again
        mine = [r["run"] for r in evaluated if r["trial_id"] == tid]
        assert [r["epoch"] for r in mine] == [1, 2]
        assert mine[1]["optimizer_steps"] == 2 * mine[0]["optimizer_steps"]


@pytest.mark.slow
def test_no_trial_touched_the_experiment_folder(killed_sweep):
    tmp, run, _ = killed_sweep
    assert run.returncode == 0, run.stderr[-3000:]
    events = touched(tmp / "audit.log")
    # the hook ran in the trials: each read the reference from its node's copy
    assert any(e == "open" and "/references/" in p for e, p in events), events[:5]
    assert not [(e, p) for e, p in events if p.startswith(str(tmp / "out"))]
    # Ray's own storage I/O is C++ (pyarrow), out of the hook's sight: its files are all here
    home, storage = tmp / "out" / "exp", tmp / "shared" / "npo"
    assert not list(home.rglob("checkpoint_*")) and not list(home.rglob("trainable_*"))
    assert len(list(storage.glob("trainable_*/checkpoint_*"))) >= 2


@pytest.mark.slow
def test_a_cluster_of_another_ray_version_is_refused_in_one_line(tmp_path):
    nodes, env = start_cluster(tmp_path)
    try:
        address = json.loads(nodes.stdout.readline())["address"]
        nodes.stdin.write("version 2.0.0\n")
        nodes.stdin.flush()
        assert json.loads(nodes.stdout.readline())["ray_version"] == "2.0.0"
        run = subprocess.run(
            sweep_args(address, tmp_path, 2),
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        nodes.stdin.close()
        nodes.wait(timeout=120)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr[-3000:]
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith(f"error: --address {address}: Version mismatch:"), line
    assert "Ray: 2.0.0" in line and f"Ray: {ray_version()}" in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "shared").exists()


def ray_version() -> str:
    from importlib.metadata import version

    return version("ray")
