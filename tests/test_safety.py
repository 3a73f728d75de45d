"""A sweep that is safe on a shared network and loses nothing (issue 19): the private Ray cluster
listens on loopback only; Ctrl-C exits 130 naming `resume`, which finishes the interrupted trial
as COMPLETE in the study, the results and the report; a moved experiment (finished or
interrupted) works where it is now and never touches its old path; a resume without Ray's folder
runs only what the journal lacks; one driver per experiment, a killed one's lock seen as stale."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SMALL_SWEEP
from test_security import run_main, snapshot


def _loopback(ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:  # ::ffff:127.0.0.1
        addr = addr.ipv4_mapped
    return addr.is_loopback


def test_the_private_cluster_listens_on_loopback_only(small_sweep):
    seen = json.loads((small_sweep[0].parent / "listeners.json").read_text())
    assert {"gcs_server", "raylet"} <= {name for _, _, name in seen}, seen  # sampled while up
    assert [s for s in seen if not _loopback(s[0])] == []


def _study(home: Path):
    import optuna

    from sweeps.experiment import journal

    return optuna.load_study(study_name="npo", storage=journal(home / "optuna" / "npo.journal"))


def _param_sets(study, states=None) -> list[str]:
    return [json.dumps(t.params, sort_keys=True) for t in study.get_trials(states=states)]


def _cli(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "unlearn_sweep", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(check, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, small_benchmark):
    """The small sweep, Ctrl-C'd (SIGINT to the driver) as its first trial starts: the resumed
    sweep finishes that one and creates the second. -> (experiment, exit code, stderr lines)."""
    home = tmp_path_factory.mktemp("interrupted") / "exp"
    proc = _cli([*SMALL_SWEEP, "--output", str(home.parent), "--name", "exp"])
    _wait_for(lambda: any((home / "ray" / "npo").glob("trainable_*")), proc)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    return home, proc.returncode, err.strip().splitlines()


def test_ctrl_c_exits_non_zero_naming_resume(interrupted, capsys):
    home, code, err = interrupted
    assert code == 130, err
    assert [ln for ln in err if "unlearn-sweep resume" in ln] == [
        f"error: interrupted; continue the sweep with `unlearn-sweep resume {home}`"
    ]
    code, _, out = run_main(["status", str(home)], capsys)
    assert code == 0 and "npo: 0 complete, 1 running, 0 failed" in out, out


def test_resume_without_rays_folder_runs_only_the_missing_trial(interrupted, tmp_path, capsys):
    copy = tmp_path / "exp"
    shutil.copytree(interrupted[0], copy)
    shutil.rmtree(copy / "ray")
    code, err, _ = run_main(["resume", str(copy)], capsys)
    assert code == 0, err
    study = _study(copy)
    complete = _param_sets(study, (study.trials[0].state.COMPLETE,))
    # the running trial's Ray state went with the folder: it failed as lost and ran again
    assert len(complete) == 2 and len(set(_param_sets(study))) == 2
    lost = [t for t in study.trials if t.state.name == "FAIL"]
    assert [t.user_attrs["failure"][:6] for t in lost] == ["lost: "]
    assert not [t for t in study.trials if t.state.name in ("RUNNING", "WAITING")]


def test_an_interrupted_experiment_moved_then_resumed_finishes_there(interrupted, tmp_path, capsys):
    """Last: it moves the shared interrupted experiment itself."""
    old = interrupted[0]
    new = tmp_path / "moved"
    os.rename(old, new)
    code, err, out = run_main(["resume", str(new)], capsys)
    assert code == 0, err
    assert "npo: 2 complete, 0 running, 0 failed" in out, out
    study = _study(new)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert len(set(_param_sets(study))) == 2
    rows = [json.loads(ln) for ln in (new / "results" / "npo.jsonl").open()]
    ends = [r["trial_id"] for r in rows if r["event"] in ("complete", "error")]
    assert len(ends) == len(set(ends)) == 2 and all(r["event"] != "error" for r in rows)
    code, err, _ = run_main(["analyze", str(new)], capsys)
    assert code == 0, err
    from analysis.load import load

    statuses, _ = load([new])
    assert list(statuses["status"].drop_duplicates()) == ["complete"]
    # series, trials, complete, stopped, diverged, failed, running
    assert "| npo | 2 | 2 | 0 | 0 | 0 | 0 |" in (new / "report.md").read_text()
    # the second trial was created after the restore: in the new place, the old one never made
    assert not old.exists()
    assert len(list((new / "ray" / "npo").glob("trainable_*"))) == 2
    # nothing of ours names the old place (Ray's own state files record the first run's path,
    # which Ray does not use when it restores)
    ours = [p for p in new.rglob("*") if p.is_file() and "ray" not in p.relative_to(new).parts]
    assert not [p for p in ours if str(old).encode() in p.read_bytes()]


def test_a_moved_finished_experiment_and_one_driver_at_a_time(
    small_sweep, tmp_path, capsys, caplog
):
    from sweeps.experiment import LOCK
    from sweeps.lock import experiment_lock

    old, new = tmp_path / "a" / "exp", tmp_path / "b" / "new"
    original = snapshot(small_sweep[0])  # where the copied experiment was made
    shutil.copytree(small_sweep[0], old)
    new.parent.mkdir()
    os.rename(old, new)
    for command in (["status"], ["analyze"]):
        code, err, _ = run_main([*command, str(new)], capsys)
        assert code == 0, err
    lock = new / LOCK
    first = _cli(["resume", str(new)])
    _wait_for(lambda: lock.is_file() and str(first.pid) in lock.read_text(), first)
    code, err, _ = run_main(["resume", str(new)], capsys)  # while the first one runs
    assert code == 2 and len(err) == 1 and f"in use by pid {first.pid} on host" in err[0], err
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0 and "npo: 2 complete, 0 running, 0 failed" in out, err
    assert not lock.exists() and not old.exists()
    # a driver killed while it holds the lock leaves the file: the next one sees it is stale
    killed = _cli(["resume", str(new)])
    _wait_for(lambda: lock.is_file() and str(killed.pid) in lock.read_text(), killed)
    killed.kill()
    killed.wait()
    assert str(killed.pid) in lock.read_text()
    with caplog.at_level(logging.WARNING, logger="sweeps.lock"), experiment_lock(new):
        assert str(os.getpid()) in lock.read_text()
    assert f"took over the stale lock of pid {killed.pid}" in caplog.text
    assert not lock.exists() and not old.exists()
    assert snapshot(small_sweep[0]) == original


def test_a_lock_naming_another_host_is_refused_with_what_to_do(tmp_path):
    """Its holder cannot be checked from here (a folder shared between machines)."""
    from sweeps.experiment import LOCK
    from sweeps.lock import experiment_lock
    from unlearn_core.errors import UserError

    lock = tmp_path / LOCK
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": "then"}))
    with pytest.raises(UserError, match=f"pid 1 on host elsewhere .*remove {lock}"):
        with experiment_lock(tmp_path):
            pass
    assert json.loads(lock.read_text())["host"] == "elsewhere"  # left for its owner
