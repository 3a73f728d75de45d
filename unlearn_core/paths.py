"""Checks of user-given model and data paths that touch only the file system (no torch or
transformers import): a mistyped path fails in milliseconds, before anything is built or loaded."""

from __future__ import annotations

import json
from pathlib import Path

from unlearn_core.errors import UserError

MODEL_ACCEPTED = "accepted: a local folder with config.json or a hub id like 'org/name'"


def looks_local(path: str) -> bool:
    """Meant as a local path: starts with /, . or ~, or names something that exists."""
    return path.startswith((".", "/", "~")) or Path(path).expanduser().exists()


def check_model_path(path: str) -> None:
    """A local path must be a model folder; anything else must look like a hub id `org/name`."""
    local = Path(path).expanduser()
    if looks_local(path) and not local.exists():
        raise UserError(
            f"model path {path!r} is not a model folder: it does not exist; {MODEL_ACCEPTED}"
        )
    if looks_local(path) and not (local / "config.json").is_file():
        raise UserError(
            f"model path {path!r} is not a model folder (no config.json there); {MODEL_ACCEPTED}"
        )
    if not looks_local(path) and path.count("/") != 1:
        raise UserError(f"model {path!r} is neither a local folder nor a hub id like 'org/name'")


def check_paths(
    model: str | None = None, data: str | None = None, retain_model: str | None = None
) -> None:
    """Every user-given path of a job at once: the model, the retain model and the data folder."""
    for path in (model, retain_model):
        if path is not None:
            check_model_path(path)
    if data is not None and looks_local(data) and not Path(data).expanduser().is_dir():
        raise UserError(
            f"data path {data!r} is not a folder; accepted: a local folder of "
            "<config>.json/.jsonl/.parquet files or a hub id like 'org/name'"
        )


def check_remote_code(
    path: str, trust_remote_code: bool, fix: str = "pass --trust-remote-code"
) -> None:
    """A local model folder whose config maps a class to its own code (`auto_map`) is loaded only
    when that code may run: refused in one line naming `fix`, before transformers sees it."""
    if trust_remote_code or not looks_local(path):
        return
    for name in ("config.json", "tokenizer_config.json"):
        file = Path(path).expanduser() / name
        if not file.is_file():
            continue
        try:
            doc = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise UserError(f"{file} is not readable JSON: {str(e).splitlines()[0]}") from None
        if isinstance(doc, dict) and doc.get("auto_map"):
            raise UserError(
                f"model {path!r} needs its own code ({name} has auto_map, not a transformers "
                f"class); {fix} if you trust that code"
            )
