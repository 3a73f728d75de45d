"""Several methods' studies at once (sweeps/together.py, issue 15): the gate's cap across studies,
its fair share and its queue, a stop that ends every study, and an error in one study stopping
the others (no Ray); then real sweeps on the small built-in benchmark: `--method grad_diff,npo
--max-concurrent 2` runs trials of both at the same time and never more than 2, each method with
its own journal, results and Ray folder; Ctrl-C stops the set and `resume` finishes it, every
trial accounted for exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from sweeps import together
from sweeps.together import GATE, StudyStopped

REPO = Path(__file__).resolve().parents[1]


def study(name: str) -> SimpleNamespace:
    """What the gate reads of a study's MovableGenerator: its limiter's live trials and name."""
    return SimpleNamespace(
        searcher=SimpleNamespace(live_trials=set()),
        _experiment=SimpleNamespace(storage=SimpleNamespace(experiment_dir_name=name)),
    )


def ask(gen: SimpleNamespace) -> str | None:
    """One suggestion through the gate; a trial it lets through becomes live."""

    def make() -> str:
        trial = f"{gen._experiment.storage.experiment_dir_name}{len(gen.searcher.live_trials)}"
        gen.searcher.live_trials.add(trial)
        return trial

    together.finished(gen, False)  # Tune asks is_finished() at every step, then next_trial()
    return together.next_trial(gen, make)


@pytest.fixture
def gate():
    yield GATE
    GATE.reset(None, [])


def test_an_open_gate_changes_nothing(gate):
    a = study("a")
    assert not together.running()
    assert [ask(a) for _ in range(3)] == ["a0", "a1", "a2"]
    assert together.finished(a, False) is False and together.finished(a, True) is True
    together.saved(a)  # never raises


def test_the_cap_holds_across_studies_each_getting_its_share(gate):
    a, b = study("a"), study("b")
    gate.reset(2, ["a", "b"])
    assert together.running()
    # a steps first, but the cap is shared: 1 each, not both to a
    assert ask(a) == "a0" and ask(a) is None
    assert ask(b) == "b0" and ask(b) is None and ask(a) is None
    a.searcher.live_trials.discard("a0")  # a's trial ended
    assert ask(b) is None  # b holds its share
    assert ask(a) == "a0"
    # a suggested all its trials: b may use the whole cap
    together.finished(a, True)
    a.searcher.live_trials.clear()
    assert ask(b) == "b1" and ask(b) is None


def test_a_freed_slot_goes_to_the_study_that_waited_longest(gate):
    a, b = study("a"), study("b")
    gate.reset(1, ["a", "b"])
    assert ask(a) == "a0"
    assert ask(b) is None  # refused: b now waits
    a.searcher.live_trials.clear()
    assert ask(a) is None  # a steps more often, but b waited first
    assert ask(b) == "b0"


def test_a_stop_ends_idle_studies_and_others_after_two_state_saves(gate):
    a, b = study("a"), study("b")
    gate.reset(2, ["a", "b"])
    assert ask(a) == "a0"
    together.ask_stop()
    assert ask(a) is None and ask(b) is None  # nothing new starts
    assert together.finished(b, False) is True  # b has no live trial: its loop ends cleanly
    assert together.finished(a, False) is False  # a's trial is running
    together.saved(a)  # the first save after the stop is uploaded by the second
    with pytest.raises(StudyStopped):
        together.saved(a)


def test_an_error_in_one_study_stops_the_others_and_is_raised(gate):
    stopped = []

    def runs_until_stopped() -> None:
        while GATE.stop_at is None:
            time.sleep(0.01)
        stopped.append(True)
        raise StudyStopped("b")

    def fails() -> None:
        raise ValueError("disk full")

    with pytest.raises(ValueError, match="disk full"):
        together.run_together({"a": fails, "b": runs_until_stopped}, 2)
    assert stopped == [True] and not together.running()


def test_ctrl_c_stops_every_study(gate):
    assert threading.current_thread() is threading.main_thread()
    ended = []

    def runs_until_stopped(name: str):
        def run() -> None:
            while GATE.stop_at is None:
                time.sleep(0.01)
            ended.append(name)
            raise StudyStopped(name)

        return run

    def ctrl_c() -> None:
        os.kill(os.getpid(), signal.SIGINT)  # the main thread's handler takes it
        runs_until_stopped("c")()

    before = signal.getsignal(signal.SIGINT)
    studies = {"a": runs_until_stopped("a"), "b": runs_until_stopped("b"), "c": ctrl_c}
    assert together.run_together(studies, 2) is True
    assert sorted(ended) == ["a", "b", "c"]
    assert signal.getsignal(signal.SIGINT) is before and not together.running()


def test_tunes_setup_runs_one_study_at_a_time(gate):
    """Tune's global trainable registry broke when two studies set up at once: each study's
    setup (from fit() to its loop's first is_finished()) waits for the one before."""
    in_setup, most = [], []

    class Tuner:
        def __init__(self, name: str) -> None:
            self.gen = study(name)

        def fit(self) -> None:
            in_setup.append(self)
            most.append(len(in_setup))
            time.sleep(0.05)
            in_setup.remove(self)
            together.finished(self.gen, False)  # the loop runs: the next may set up
            time.sleep(0.1)

    threads = [threading.Thread(target=together.fit, args=(Tuner(n),)) for n in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most == [1, 1, 1]


# Real sweeps: two methods together on 2 CPU cores, 2 trials each of 1 epoch.
METHODS = ("grad_diff", "npo")
TOGETHER = [
    "sweep",
    "--method",
    ",".join(METHODS),
    "--benchmark",
    "tiny-tofu-small",
    "--split",
    "forget10",
    "--trials",
    "2",
    "--fix",
    "epochs=1",
    "--max-concurrent",
    "2",
]


def _cli(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "unlearn_sweep", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def _ends(home: Path, method: str) -> list[dict]:
    rows = [json.loads(ln) for ln in (home / "results" / f"{method}.jsonl").open()]
    assert {r["method"] for r in rows} == {method}  # each method writes its own log
    return [r for r in rows if r["event"] in ("complete", "error")]


def _told(home: Path, method: str) -> list:
    from sweeps.experiment import is_epoch_point, load_study

    return [t for t in load_study(home, method).trials if not is_epoch_point(t)]


def _most_at_once(spans: list[tuple[float, float]]) -> int:
    edges = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    running = most = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        running += step
        most = max(most, running)
    return most


@pytest.mark.slow
def test_two_methods_run_at_once_within_the_cap(tmp_path, small_benchmark):
    proc = _cli([*TOGETHER, "--output", str(tmp_path), "--name", "exp"])
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err[-3000:]
    home = tmp_path / "exp"
    spans = {}
    for method in METHODS:
        told = _told(home, method)  # its own journal, its own study
        assert [t.state.name for t in told] == ["COMPLETE", "COMPLETE"]
        ends = _ends(home, method)
        assert [r["event"] for r in ends] == ["complete", "complete"]
        assert {r["trial_id"] for r in ends} == {t.user_attrs["ray_trial_id"] for t in told}
        assert len(list((home / "ray" / method).glob("trainable_*"))) == 2
        spans[method] = [(r["run"]["started"], r["run"]["time"]) for r in ends]
    # some trial of each method ran while one of the other did
    assert any(s1 < e2 and s2 < e1 for s1, e1 in spans["grad_diff"] for s2, e2 in spans["npo"])
    assert _most_at_once([s for m in METHODS for s in spans[m]]) == 2


@pytest.mark.slow
def test_an_interrupted_set_resumes_every_trial_exactly_once(tmp_path, small_benchmark):
    home = tmp_path / "exp"
    proc = _cli([*TOGETHER, "--output", str(tmp_path), "--name", "exp"])
    deadline = time.monotonic() + 600
    # Ctrl-C once a trial of each method runs
    while not all(any((home / "ray" / m).glob("trainable_*")) for m in METHODS):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err[-3000:]
    assert f"error: interrupted; continue the sweep with `unlearn-sweep resume {home}`" in err
    assert any(t.state.name == "RUNNING" for m in METHODS for t in _told(home, m))
    resumed = _cli(["resume", str(home)])
    out, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err[-3000:]
    for method in METHODS:
        assert f"{method}: 2 complete, 0 running, 0 failed" in out, out
        told = _told(home, method)
        assert [t.state.name for t in told] == ["COMPLETE", "COMPLETE"]
        assert len({json.dumps(t.params, sort_keys=True) for t in told}) == 2
        ends = _ends(home, method)
        ids = [r["trial_id"] for r in ends]
        assert len(ids) == len(set(ids)) == 2 and {r["event"] for r in ends} == {"complete"}
        assert set(ids) == {t.user_attrs["ray_trial_id"] for t in told}
        assert len(list((home / "ray" / method).glob("trainable_*"))) == 2
