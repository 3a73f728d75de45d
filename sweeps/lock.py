"""One experiment, one driver: `sweep` and `resume` hold `<experiment>/.driver.lock` while they
run. The lock is an flock on the file (the kernel drops it when the holder dies, however it
dies); the file names the holder's pid and host, so the second driver says who holds it."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

from sweeps.experiment import lock_path
from unlearn_core.errors import UserError

log = logging.getLogger(__name__)


def _holder(text: str) -> dict:
    try:
        data = json.loads(text)
    except ValueError:  # empty: a holder killed between creating and filling it
        return {}
    return data if isinstance(data, dict) else {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _refuse(home: Path, holder: dict, why: str) -> UserError:
    return UserError(
        f"experiment {home} is in use by pid {holder.get('pid', '?')} on host "
        f"{holder.get('host', '?')} (since {holder.get('since', '?')}){why}"
    )


def _acquire(home: Path) -> int:
    """The open, flocked lock file; refuses in one line when another driver holds it."""
    path = lock_path(home)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as e:  # a symlink planted there, or a read-only folder
            raise UserError(f"cannot open the lock {path}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(os.pread(fd, 4096, 0).decode(errors="replace"))
            os.close(fd)
            raise _refuse(home, holder, "; wait for it to end") from None
        try:  # the holder may have removed the file between our open and our flock
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


@contextlib.contextmanager
def experiment_lock(home: Path) -> Iterator[None]:
    """Holds the experiment's lock for the block. A lock file left by a driver that died on this
    host (its flock dropped with it) is stale and taken over; one naming another host, whose
    processes cannot be checked from here, is refused with what to do."""
    fd = _acquire(home)
    try:
        holder = _holder(os.pread(fd, 4096, 0).decode(errors="replace"))
        host = socket.gethostname()
        if holder and holder.get("host") != host:
            raise _refuse(
                home, holder, f"; if no driver runs there any more, remove {lock_path(home)}"
            )
        if holder:
            state = "is no longer running" if not _alive(int(holder["pid"])) else "let it go"
            log.warning(
                "took over the stale lock of pid %s on %s (it %s)", holder["pid"], host, state
            )
        me = {
            "pid": os.getpid(),
            "host": host,
            "since": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
    except BaseException:
        os.close(fd)
        raise
    try:
        yield
    finally:
        # while still flocked: a driver waiting on it re-checks the inode
        os.unlink(lock_path(home))
        os.close(fd)
