"""An experiment folder can be moved (`mv exp new`): what Ray keeps inside it (the pickled
callbacks, every trial's config) names the experiment's files relative to it, resolved against
the folder the running command was given, which the driver puts in UNLEARN_SWEEP_EXPERIMENT for
itself and, through the runtime environment, for its trials."""

from __future__ import annotations

import os
from pathlib import Path

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
