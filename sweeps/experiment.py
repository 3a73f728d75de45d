"""The experiment folder, owned here: every path in it is spelled once, below, and the manifest
(written first by every sweep: only folders that carry it are resumed or analysed, since resuming
unpickles Ray's state) and the Optuna studies are read here. Light on purpose: analysis imports it
without torch or ray (optuna loads only when a study is read)."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path

from unlearn_core.errors import UserError
from unlearn_core.write_errors import WRITE_ERRNOS

MANIFEST = "unlearn_sweep.json"
LOCK = ".driver.lock"  # held by the one driver of the folder (sweeps/lock.py)


def manifest_path(home: Path) -> Path:
    return home / MANIFEST


def lock_path(home: Path) -> Path:
    return home / LOCK


def sweep_yaml_path(home: Path) -> Path:
    """The manifest's sweeps as YAML, for people (nothing reads it back)."""
    return home / "sweep.yaml"


def journals_dir(home: Path) -> Path:
    return home / "optuna"


def journal_path(home: Path, method: str) -> Path:
    """The method's Optuna study: the source of truth for trial states and values."""
    return journals_dir(home) / f"{method}.journal"


def results_dir(home: Path) -> Path:
    return home / "results"


def results_path(home: Path, method: str) -> Path:
    """One JSON line per reported epoch and trial end (sweeps.callbacks.ResultsLog)."""
    return results_dir(home) / f"{method}.jsonl"


def references_path(home: Path) -> Path:
    """The retain reference and the reference models' metrics, computed once per sweep."""
    return home / "reference"


def reference_path(home: Path, benchmark: str, split: str) -> Path:
    """The RetainReference every trial of the sweep reads (computed once)."""
    return references_path(home) / f"{benchmark}-{split}.json"


def model_metrics_path(home: Path, model: str, benchmark: str, split: str) -> Path:
    """A reference model's aggregate metrics; model: target | retain."""
    return references_path(home) / f"{model}-{benchmark}-{split}.json"


def ray_path(home: Path) -> Path:
    """Ray's storage (trial checkpoints, experiment state) unless --storage names another."""
    return home / "ray"


def faults_path(home: Path) -> Path:
    """Injected faults' bookkeeping (sweeps/faults.py; only with UNLEARN_SWEEP_FAULTS set)."""
    return home / "faults"


def driver_memory_path(home: Path) -> Path:
    return home / "driver_memory.jsonl"


def best_dir(home: Path) -> Path:
    """`export`'s folder of best configurations."""
    return home / "best"


def best_path(home: Path, method: str, suffix: str) -> Path:
    """An exported configuration: `.yaml` (what `unlearn --config` reads) or its `.json` mirror."""
    return best_dir(home) / f"{method}{suffix}"


def confirmed_path(home: Path) -> Path:
    """`confirm`'s record: each confirmed point's fresh-seed runs and their mean and interval
    (sweeps/confirm.py writes it, analysis/confirmed.py reads it)."""
    return home / "confirmed.json"


def confirm_storage(home: Path) -> Path:
    """Ray's storage for `confirm`'s trials unless --storage names another; removed after each
    run (the record holds what they measured, and nothing resumes them)."""
    return ray_path(home) / "confirm"


def openunlearning_path(home: Path, method: str) -> Path:
    """`export --openunlearning`'s open-unlearning experiment file, beside the exported config."""
    return best_dir(home) / f"{method}.openunlearning.yaml"


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
OPTIONAL_FIELDS = {"source": dict, "seed": int, "batch_size": int, "grad_accum": int}
SOURCE_FIELDS = {"benchmark": str, "split": str}


def _typed(entry: dict, required: dict, optional: dict) -> str | None:
    for key, kind in required.items() | optional.items():
        if key not in entry and key in optional:
            continue
        value = entry.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"has {key} {value!r}, not a {kind.__name__}"
    return None


def _sweep_problem(sweep: object) -> str | None:
    """Why a manifest's sweep entry is not what `to_dict` writes, or None."""
    if not isinstance(sweep, dict):
        return "is not a mapping"
    problem = _typed(sweep, SWEEP_FIELDS, OPTIONAL_FIELDS)
    problem = problem or _typed(sweep.get("source", {}), {}, SOURCE_FIELDS)
    if problem:
        return problem
    if not re.fullmatch(r"[a-z0-9_]+", sweep["method"]):  # it names files: no path in it
        return f"names method {sweep['method']!r}"
    if not sweep["objectives"] or not all(isinstance(o, str) for o in sweep["objectives"]):
        return f"has objectives {sweep['objectives']!r}, not a list of names"
    return None


# The user attribute of a study trial that the searcher added for an evaluated epoch of a Ray
# trial other than its last (sweeps/search.py): its value is that Ray trial's id. Such a trial
# is a point the sampler learns from and the front holds, not a trial of the budget.
EPOCH_OF = "epoch_of"


def is_epoch_point(t) -> bool:
    """True for a study trial recording an earlier evaluated epoch of a Ray trial (EPOCH_OF)."""
    return EPOCH_OF in t.user_attrs


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


def holds(path: Path, home: Path) -> str:
    """What a path in the folder holds, for a message (by the entry of `home` it lies in)."""
    entries = [
        (manifest_path(home), "the experiment manifest"),
        (sweep_yaml_path(home), "the experiment manifest"),
        (results_dir(home), "the trial results"),
        (journals_dir(home), "the Optuna journal"),
        (references_path(home), "the reference models' metrics"),
        (ray_path(home), "Ray's experiment state and checkpoints"),
        (plots_path(home), "the analysis plots"),
        (report_path(home, ".md"), "the analysis report"),
        (report_path(home, ".html"), "the analysis report"),
        (comparison_path(home), "the comparison report"),
        (best_dir(home), "the exported configs"),
        (confirmed_path(home), "the confirmed points"),
    ]
    try:
        first = Path(path).absolute().relative_to(home).parts[0]
    except (ValueError, IndexError):
        return "a file of the experiment"
    name = first.lstrip(".")  # a temporary sibling (.report.md.123.tmp) holds the same
    return next((w for p, w in entries if name.startswith(p.name)), "a file of the experiment")


def _resumable(home: Path) -> bool:
    try:
        doc = json.loads(manifest_path(home).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("tool") == "unlearn-sweep"


def write_failure(e: OSError, home: Path) -> str:
    """The one line for a write into `home` that failed: the path, what it held, and whether
    `resume` continues the sweep."""
    path = Path(e.filename or home)
    line = f"cannot write {path} ({e.strerror or e}) while writing {holds(path, home)}"
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
        raise UserError(write_failure(e, home)) from None
