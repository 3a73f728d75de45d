"""Writing outputs so that a failure never leaves a half-written file (write a temporary sibling,
then rename it over the target: atomic on one file system), and only inside the experiment: a
symlinked output folder or file, which would lead the write elsewhere, is refused."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from unlearn_core.errors import UserError


def _refuse(link: Path, home: Path | None) -> UserError:
    where = f"inside {home}" if home else "to real files"
    return UserError(f"{link} is a symlink; analyze and export write only {where}: remove it")


def check_inside(home: Path, targets: list[Path]) -> None:
    """Before the first write: no target (a file, or a folder written into) under `home` is a
    symlink or lies under one, and no entry of a target folder is one (plotly writes its
    plotly.min.js next to the HTML itself)."""
    for target in targets:
        path = home
        for part in target.relative_to(home).parts:
            path = path / part
            if path.is_symlink():
                raise _refuse(path, home)
        if target.is_dir():
            for entry in target.iterdir():
                if entry.is_symlink():
                    raise _refuse(entry, home)


@contextlib.contextmanager
def atomic(path: Path) -> Iterator[Path]:
    """Yields a temporary path next to `path`; renamed to `path` if the block succeeds."""
    for p in (path.parent, path):
        if p.is_symlink():
            raise _refuse(p, None)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)  # never write through a leftover (or planted) link
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> Path:
    with atomic(path) as tmp:
        tmp.write_text(text)
    return path
