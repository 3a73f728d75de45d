"""Ctrl-C during a sweep: Ray Tune catches the first SIGINT, saves its experiment state and
returns from `fit()` as if the sweep had ended. The driver must tell the two apart: after an
interruption the running trials stay RUNNING in the study (`resume` finishes them) and the
command exits non-zero naming `unlearn-sweep resume`."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from sweeps import together


class Interrupted(Exception):
    """The sweep of `home` was interrupted; the CLI prints the message and exits 130."""

    def __init__(self, home: Path) -> None:
        super().__init__(f"interrupted; continue the sweep with `unlearn-sweep resume {home}`")
        self.home = home


def _second_ctrl_c(sig: int, frame) -> None:
    raise KeyboardInterrupt


def fit(tuner) -> bool:
    """`tuner.fit()`; True if a SIGINT stopped it. Tune's handler, installed inside fit(), puts
    back the handler it found when it catches a SIGINT and leaves itself in place otherwise:
    finding ours in place afterwards means Tune caught one."""
    if threading.current_thread() is not threading.main_thread():
        # Tune installs no handler off the main thread: a study run with others
        # (sweeps/together.py) is stopped by the gate, which raises StudyStopped
        together.fit(tuner)
        return False
    previous = signal.signal(signal.SIGINT, _second_ctrl_c)
    try:
        tuner.fit()
        return signal.getsignal(signal.SIGINT) is _second_ctrl_c
    finally:
        signal.signal(signal.SIGINT, previous)
