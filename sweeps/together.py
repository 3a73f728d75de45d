"""Several methods' studies at once on one cluster (`--method a,b,c`): one Tuner per method, each
`fit()` in a thread of this driver, one cap on the trials running across them (the gate), and a
Ctrl-C that stops every study so that `resume` continues the set.

Why threads in one driver, not a driver process per method or a Ray custom resource:
- The cap is plain shared memory. Each study's search generator (sweeps/search.py's
  MovableGenerator, which Ray pickles into its state, so restored studies have it too) asks the
  gate before it suggests a trial; the gate counts each study's live trials, suggested and not
  yet ended, as Tune's ConcurrencyLimiter does. Driver processes would need a counter across
  processes (a lock file or a Ray actor); a custom resource ("one slot per trial") would change
  every trial's resource request and exists on a cluster joined with --address only if its owner
  declared it.
- Each study keeps its own Tuner, journal, results log and Ray folder: nothing of the per-method
  code changes, and a one-method sweep does not come here at all (it runs as before).
- Tune catches Ctrl-C only in the main thread; the studies here run off it. This module's own
  handler (main thread) asks every study to stop: none suggests another trial; a study with no
  live trial reports itself finished, so its loop ends as after Tune's own Ctrl-C; one with live
  trials raises StudyStopped out of Tune's loop as Tune saves its state the second time after
  the request (the first save, uploaded by then, names every trial it started). Either way its
  trials stay RUNNING in the journal and in Ray's state, and `resume` restores them. A second
  Ctrl-C exits at once.
- What threads cost: Tune's setup of a run is not thread-safe, so the studies set up one at a
  time (`fit`); actors are not kept for reuse (one kept by a study the gate holds back would
  hold the slot it gave another, sweeps/launch.py); the retain reference the studies share is
  computed before they start (launch.run_methods).
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

# Tune saves its state every TUNE_GLOBAL_CHECKPOINT_S (1 s, sweeps/launch.py) and uploads each
# save in the background: the first save after a stop is uploaded by the time of the second
SAVES_BEFORE_STOP = 2


class StudyStopped(Exception):
    """Raised out of a study's Tune loop when the set was asked to stop (Ctrl-C)."""


class Gate:
    """What the studies of one concurrent run share. The driver runs one experiment at a time
    (sweeps/lock.py), so one gate per process: `GATE`, open (cap None) outside `run_together`."""

    def __init__(self) -> None:
        self.lock = threading.RLock()  # the generator's own is_finished runs inside next_trial
        self.cap: int | None = None
        self.members: dict[str, object] = {}  # study name -> its MovableGenerator
        self.wanting: set[str] = set()  # studies that may still suggest trials
        self.waiting: dict[str, float] = {}  # study -> when the gate first refused it
        self.stop_at: float | None = None
        self.saves: dict[str, int] = {}  # study -> Tune's state saves since the stop

    def reset(self, cap: int | None, studies: list[str]) -> None:
        with self.lock:
            self.cap = cap
            self.members, self.wanting, self.waiting = {}, set(studies), {}
            self.stop_at, self.saves = None, {}

    def live(self) -> dict[str, int]:
        # ConcurrencyLimiter.live_trials: suggested, not yet ended (restored ones included)
        return {n: len(g.searcher.live_trials) for n, g in self.members.items()}

    def may_start(self, name: str) -> bool:
        """A study may suggest a trial while the set runs fewer than the cap, it runs fewer than
        its fair share of the cap, and no other study that the gate refused runs fewer trials,
        or as many and has waited longer (a study that steps more often would take every slot
        freed)."""
        live = self.live()
        mine = live.get(name, 0)
        if self.stop_at is not None or sum(live.values()) >= self.cap:
            return False
        if mine >= math.ceil(self.cap / max(1, len(self.wanting))):
            return False
        key = (mine, self.waiting.get(name, math.inf))
        return not any(
            (live.get(n, 0), since) < key for n, since in self.waiting.items() if n != name
        )


GATE = Gate()


class _Holder(threading.local):
    setup = False  # this thread holds _SETUP


# Tune's setup of a run is not thread-safe (two studies registering their trainable at once
# broke its global registry: "dictionary changed size during iteration"): one study at a time,
# from fit() until its loop first asks is_finished()
_SETUP = threading.Lock()
_HOLDER = _Holder()


def fit(tuner) -> None:
    """`tuner.fit()` in a study's thread, its setup one study at a time."""
    _SETUP.acquire()
    _HOLDER.setup = True
    try:
        tuner.fit()
    finally:
        _set_up()


def _set_up() -> None:
    if _HOLDER.setup:
        _HOLDER.setup = False
        _SETUP.release()


def running() -> bool:
    """Whether studies run together now (the gate is closed)."""
    return GATE.cap is not None


def _name(gen) -> str:
    # the Tune experiment's name is the method (sweeps/launch.py, RunConfig(name=cfg.method))
    return gen._experiment.storage.experiment_dir_name


def next_trial(gen, make: Callable):
    """`make()` (SearchGenerator.next_trial) if the gate lets the study start a trial, else
    None: Tune asks again at its next step."""
    if GATE.cap is None:
        return make()
    name = _name(gen)
    with GATE.lock:
        GATE.members[name] = gen
        if not GATE.may_start(name):
            GATE.waiting.setdefault(name, time.monotonic())
            return None
        GATE.waiting.pop(name, None)
        return make()


def finished(gen, done: bool) -> bool:
    """The generator's is_finished(), which Tune calls at every step and while it stops a trial:
    the study joins the gate and leaves the studies wanting slots once it suggested all its
    trials. Once the set is to stop, a study with no live trial is finished: Tune's loop ends
    as after its own Ctrl-C (a last save of its state, then its trials stopped). Never raises:
    Tune calls it inside its own error handling too (stopping a trial)."""
    _set_up()  # the study's loop runs: the next may set up
    if GATE.cap is None:
        return done
    name = _name(gen)
    with GATE.lock:
        GATE.members[name] = gen
        if done:
            GATE.wanting.discard(name)
            GATE.waiting.pop(name, None)
        return done or (GATE.stop_at is not None and not gen.searcher.live_trials)


def saved(gen) -> None:
    """From the generator's save_to_dir(), as Tune saves the experiment state (its state and
    ours written; the upload of this save is not launched): once the set is to stop, a study
    with live trials raises StudyStopped out of Tune's loop at its SAVES_BEFORE_STOP-th save,
    so the state uploaded names every trial it started (none started since the stop)."""
    if GATE.cap is None or GATE.stop_at is None or not gen.searcher.live_trials:
        return
    name = _name(gen)
    with GATE.lock:
        GATE.saves[name] = GATE.saves.get(name, 0) + 1
        if GATE.saves[name] >= SAVES_BEFORE_STOP:
            raise StudyStopped(name)


def ask_stop() -> None:
    with GATE.lock:
        if GATE.stop_at is None:
            GATE.stop_at = time.monotonic()


def _left(name: str) -> None:
    with GATE.lock:
        GATE.wanting.discard(name)
        GATE.waiting.pop(name, None)


def _second_ctrl_c(sig: int, frame) -> None:
    raise KeyboardInterrupt


def _first_ctrl_c(sig: int, frame) -> None:
    log.warning(
        "stop signal received: stopping every study once Ray saved its state (Ctrl-C "
        "again to skip that)"
    )
    ask_stop()
    signal.signal(signal.SIGINT, _second_ctrl_c)


def run_together(studies: dict[str, Callable[[], None]], cap: int) -> bool:
    """Run each study (name -> the call that runs it to its end) in a thread of its own, at most
    `cap` trials at once across them. A study's error stops the others and is raised once they
    stopped; a Ctrl-C stops them all. Returns whether they were stopped (`resume` continues)."""
    GATE.reset(cap, list(studies))
    errors: dict[str, BaseException] = {}

    def work(name: str, run: Callable[[], None]) -> None:
        try:
            run()
        except StudyStopped:
            pass
        except BaseException as e:  # kept for the main thread, which raises it
            errors[name] = e
            ask_stop()
        finally:
            _left(name)

    threads = [
        threading.Thread(target=work, args=item, name=f"study-{item[0]}", daemon=True)
        for item in studies.items()
    ]
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, _first_ctrl_c) if main else None
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():  # a join with a timeout lets the main thread take the signal
                t.join(0.5)
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
        stopped = GATE.stop_at is not None
        if not any(t.is_alive() for t in threads):
            GATE.reset(None, [])
        # else a second Ctrl-C: the gate stays shut for the studies' threads until the exit
    for name in studies:
        if name in errors:
            raise errors[name]
    return stopped
