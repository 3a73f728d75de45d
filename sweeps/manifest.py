"""The experiment manifest, written first by every sweep: only folders that carry it are resumed
or analysed (resuming unpickles Ray's state). Light on purpose: analysis reads it without torch."""

from __future__ import annotations

import json
from pathlib import Path

from unlearn_core.errors import UserError

MANIFEST = "unlearn_sweep.json"


def read_manifest(home: Path) -> dict:
    """The manifest of `home`; anything else is refused with one line naming why."""
    path = home / MANIFEST
    if not home.is_dir():
        raise UserError(f"{home} is not a folder")
    if not path.is_file():
        raise UserError(f"{home} is not an unlearn-sweep experiment (no {MANIFEST})")
    try:
        data = json.loads(path.read_text())
    except ValueError as e:  # not JSON, or not even text
        raise UserError(f"{path} is corrupted: {e}") from e
    if (
        not isinstance(data, dict)
        or data.get("tool") != "unlearn-sweep"
        or not isinstance(data.get("sweeps"), list)
    ):
        raise UserError(f"{path} is not an unlearn-sweep manifest")
    return data
