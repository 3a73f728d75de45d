"""Write failures the user can fix (read-only folder, full disk, permission, a file where a folder
should be): which errnos they are, and a probe that names one before the first write. What a
failed write in an experiment folder means for the sweep is sweeps/experiment.py's."""

from __future__ import annotations

import errno
import os
import tempfile
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
