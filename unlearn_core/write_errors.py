"""Write failures (read-only folder, full disk, permission, a file where a folder should be) as one
line naming the path, what was being written and whether the experiment can be resumed."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from unlearn_core.errors import UserError

# errnos of a write the user can fix (space, permissions, the file system); others are bugs
WRITE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.EFBIG,
}
# what a path in an experiment folder holds, by its first part (the layout sweeps/launch.py writes)
WHAT = {
    "unlearn_sweep.json": "the experiment manifest",
    "sweep.yaml": "the experiment manifest",
    "results": "the trial results",
    "optuna": "the Optuna journal",
    "reference": "the reference models' metrics",
    "ray": "Ray's experiment state and checkpoints",
    "analysis": "the analysis plots",
    "report.md": "the analysis report",
    "report.html": "the analysis report",
    "comparison": "the comparison report",
    "best": "the exported configs",
}


def what(path: Path, home: Path) -> str:
    try:
        first = Path(path).absolute().relative_to(home).parts[0]
    except (ValueError, IndexError):
        return "a file of the experiment"
    name = first.lstrip(".")  # a temporary sibling (.report.md.123.tmp) holds the same
    return next((w for key, w in WHAT.items() if name.startswith(key)), "a file of the experiment")


def _resumable(home: Path) -> bool:
    try:
        doc = json.loads((home / "unlearn_sweep.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("tool") == "unlearn-sweep"


def sweep_message(e: OSError, home: Path) -> str:
    path = Path(e.filename or home)
    line = f"cannot write {path} ({e.strerror or e}) while writing {what(path, home)}"
    if _resumable(home):
        return (
            f"{line}; the finished trials are kept and the experiment can be resumed: free "
            f"space or fix the permission, then `unlearn-sweep resume {home}`"
        )
    return f"{line}; the experiment was not started: remove {home} and run the sweep again"


@contextlib.contextmanager
def reported(home: Path) -> Iterator[None]:
    """A sweep or resume: a failed write ends in one line saying whether `resume` continues it."""
    try:
        yield
    except OSError as e:
        if e.errno not in WRITE_ERRNOS:
            raise
        raise UserError(sweep_message(e, home)) from None


def probe(folder: Path, what: str, hint: str) -> None:
    """Before the first write into `folder` (created if missing): it is a folder we can write in,
    else one line naming the path, `what` would be written there, and `hint`."""
    folder = Path(folder)
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
    problem = None
    if not existing.is_dir():
        problem = "a file, not a folder"
    else:
        try:
            fd, name = tempfile.mkstemp(dir=existing, prefix=".unlearn-sweep-probe-")
            os.close(fd)
            os.unlink(name)
        except OSError as e:
            problem = e.strerror or str(e)
    if problem is not None:
        raise UserError(f"cannot write {what} to {folder} ({existing}: {problem}); {hint}")
