"""An experiment folder can be moved (`mv exp new`): what Ray keeps inside it (the pickled
callbacks, every trial's config) names the experiment's files relative to it, resolved against
the folder the running command was given, which the driver puts in UNLEARN_SWEEP_EXPERIMENT for
itself and, through the runtime environment, for its trials. The trials themselves never open
the folder (it may be on the driver's disk alone): what they read from it reaches them through
Ray's object store, and a job that reads a file gets a copy on its own node (`node_copy`)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from unlearn_core.builtin import cache_root

EXPERIMENT_ENV = "UNLEARN_SWEEP_EXPERIMENT"


def drive(home: Path) -> None:
    """This process drives `home` (before Ray starts, so the trials inherit it)."""
    os.environ[EXPERIMENT_ENV] = str(home)


def relative(home: Path, path: str | Path) -> str:
    """`path` relative to `home` when inside it; a path elsewhere (a --storage) stays absolute."""
    path = Path(path)
    return str(path.relative_to(home)) if path.is_relative_to(home) else str(path)


def inside(path: str | Path) -> Path:
    """A stored path resolved against the experiment being driven (an absolute one, as older
    experiments stored them, is kept as it is)."""
    return Path(os.environ[EXPERIMENT_ENV]) / path


def digest(content: dict) -> str:
    """A JSON value's name by content: what a trial's config records of the reference it got."""
    text = json.dumps(content, sort_keys=True)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def node_copy(content: dict) -> Path:
    """`content` (a retain reference from Ray's object store) as the JSON file a job reads, in this
    node's cache under its digest: written once per node, atomically (trials on one node share it,
    and one that reads it while another writes sees the whole file or none)."""
    path = cache_root() / "references" / f"{digest(content).removeprefix('sha256:')}.json"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".part", delete=False) as f:
        json.dump(content, f)
    os.replace(f.name, path)
    return path
