"""The experiment folder, owned here: every path in it is spelled once, below, and the manifest
(written first by every sweep: only folders that carry it are resumed or analysed, since resuming
unpickles Ray's state) and the Optuna studies are read here. Light on purpose: analysis imports it
without torch or ray (optuna loads only when a study is read)."""

from __future__ import annotations

import json
from pathlib import Path

from unlearn_core.errors import UserError

MANIFEST = "unlearn_sweep.json"


def manifest_path(home: Path) -> Path:
    return home / MANIFEST


def sweep_yaml_path(home: Path) -> Path:
    """The manifest's sweeps as YAML, for people (nothing reads it back)."""
    return home / "sweep.yaml"


def journal_path(home: Path, method: str) -> Path:
    """The method's Optuna study: the source of truth for trial states and values."""
    return home / "optuna" / f"{method}.journal"


def results_path(home: Path, method: str) -> Path:
    """One JSON line per reported epoch and trial end (sweeps.callbacks.ResultsLog)."""
    return home / "results" / f"{method}.jsonl"


def reference_path(home: Path, benchmark: str, split: str) -> Path:
    """The RetainReference every trial of the sweep reads (computed once)."""
    return home / "reference" / f"{benchmark}-{split}.json"


def model_metrics_path(home: Path, model: str, benchmark: str, split: str) -> Path:
    """A reference model's aggregate metrics; model: target | retain."""
    return home / "reference" / f"{model}-{benchmark}-{split}.json"


def ray_path(home: Path) -> Path:
    """Ray's storage (trial checkpoints, experiment state) unless --storage names another."""
    return home / "ray"


def driver_memory_path(home: Path) -> Path:
    return home / "driver_memory.jsonl"


def best_path(home: Path, method: str, suffix: str) -> Path:
    """An exported configuration: `.yaml` (what `unlearn --config` reads) or its `.json` mirror."""
    return home / "best" / f"{method}{suffix}"


def report_path(home: Path, suffix: str) -> Path:
    """`analyze`'s report: `.md` or `.html`, in the folder (or in its comparison_path)."""
    return home / f"report{suffix}"


def plots_path(home: Path) -> Path:
    """`analyze`'s plots (PNG and interactive HTML), next to the report."""
    return home / "analysis"


def comparison_path(home: Path) -> Path:
    """Where `analyze` writes the side-by-side report of several folders (in the first)."""
    return home / "comparison"


def read_manifest(home: Path) -> dict:
    """The manifest of `home`; anything else is refused with one line naming why."""
    path = manifest_path(home)
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


def study_name(method: str) -> str:
    return method  # one study per method and folder


def journal(path: Path):
    """The Optuna journal storage at `path` (its folder created)."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(path)))


def load_study(home: Path, method: str):
    """The method's Optuna study, None if the sweep never started it, or one line naming the
    journal that cannot be read."""
    import optuna

    path = journal_path(home, method)
    if not path.is_file():
        return None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        return optuna.load_study(study_name=study_name(method), storage=journal(path))
    except Exception as e:  # a damaged journal raises from deep inside optuna (several types)
        raise UserError(f"cannot read {path}: {(str(e).splitlines() or [repr(e)])[0]}") from e
