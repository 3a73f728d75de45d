"""The experiment manifest, written first by every sweep: only folders that carry it are resumed
or analysed (resuming unpickles Ray's state). Light on purpose: analysis reads it without torch."""

from __future__ import annotations

import json
import re
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
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:  # not JSON, or not even text
        raise UserError(f"{path} is corrupted: {e}") from e
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    if (
        not isinstance(data, dict)
        or data.get("tool") != "unlearn-sweep"
        or not isinstance(data.get("sweeps"), list)
    ):
        raise UserError(f"{path} is not an unlearn-sweep manifest")
    for i, sweep in enumerate(data["sweeps"]):
        problem = _sweep_problem(sweep)
        if problem:
            raise UserError(f"{path}: sweep {i + 1} {problem}; the manifest is damaged")
    defaults = data.get("defaults", {})
    if not isinstance(defaults, dict) or not all(isinstance(d, dict) for d in defaults.values()):
        raise UserError(f"{path}: defaults must map each method to its parameters")
    return data


# What every reader of a sweep entry relies on (the rest is checked where it is used: resume
# builds a SweepConfig from it, analysis checks the objectives' names)
SWEEP_FIELDS = {"method": str, "objectives": list, "trials": int}
OPTIONAL_FIELDS = {
    "benchmark": str,
    "split": str,
    "seed": int,
    "batch_size": int,
    "grad_accum": int,
}


def _sweep_problem(sweep: object) -> str | None:
    """Why a manifest's sweep entry is not what `to_dict` writes, or None."""
    if not isinstance(sweep, dict):
        return "is not a mapping"
    for key, kind in SWEEP_FIELDS.items() | OPTIONAL_FIELDS.items():
        if key not in sweep and key in OPTIONAL_FIELDS:
            continue
        value = sweep.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"has {key} {value!r}, not a {kind.__name__}"
    if not re.fullmatch(r"[a-z0-9_]+", sweep["method"]):  # it names files: no path in it
        return f"names method {sweep['method']!r}"
    if not sweep["objectives"] or not all(isinstance(o, str) for o in sweep["objectives"]):
        return f"has objectives {sweep['objectives']!r}, not a list of names"
    return None
