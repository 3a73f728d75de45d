"""Load TOFU-shaped configs from a local folder (JSON / JSONL / parquet / `save_to_disk`) or the hub
(`locuslab/TOFU`), with the fields each config needs checked on load."""

from __future__ import annotations

import json
from pathlib import Path

from unlearn_core.errors import UserError

FORGET_SPLITS = ("forget01", "forget05", "forget10")
QA = ("question", "answer")
PERTURBED = ("question", "answer", "paraphrased_answer", "perturbed_answer")
OPTIONS = ("question", "answer", "perturbed_answer")


def required_fields(config: str) -> tuple[str, ...]:
    if config in ("real_authors_perturbed", "world_facts_perturbed"):
        return OPTIONS
    if config.endswith("_perturbed"):
        return PERTURBED
    return QA


def split_configs(split: str) -> dict[str, str]:
    """The configs a forget split uses: training (forget, retain) and evaluation."""
    if split not in FORGET_SPLITS:
        raise UserError(f"unknown split {split!r}; accepted: {', '.join(FORGET_SPLITS)}")
    pct = split[-2:]
    return {
        "forget": split,
        "retain": f"retain{100 - int(pct)}",
        "forget_perturbed": f"{split}_perturbed",
        "retain_perturbed": "retain_perturbed",
        "real_authors": "real_authors_perturbed",
        "world_facts": "world_facts_perturbed",
        "holdout": f"holdout{pct}",
    }


def _read_local(folder: Path, config: str) -> list[dict]:
    for suffix in (".json", ".jsonl"):
        file = folder / f"{config}{suffix}"
        if file.is_file():
            text = file.read_text()
            try:
                if suffix == ".jsonl":
                    return [json.loads(line) for line in text.splitlines() if line.strip()]
                rows = json.loads(text)
            except json.JSONDecodeError as e:
                raise UserError(f"{file} is not valid JSON: {e}") from e
            if not isinstance(rows, list):
                raise UserError(f"{file} must hold a list of records")
            return rows
    if (folder / f"{config}.parquet").is_file():
        import pandas as pd

        return pd.read_parquet(folder / f"{config}.parquet").to_dict("records")
    if (folder / config).is_dir():
        from datasets import load_from_disk

        return load_from_disk(str(folder / config)).to_list()
    raise UserError(
        f"data folder {folder} has no config {config!r} "
        f"(looked for {config}.json, {config}.jsonl, {config}.parquet, {config}/)"
    )


def _read_hub(repo: str, config: str) -> list[dict]:
    from datasets import load_dataset

    try:
        return load_dataset(repo, config, split="train").to_list()
    except Exception as e:  # the hub raises many types: offline, missing config, auth
        raise UserError(f"cannot load {repo} config {config!r}: {str(e).splitlines()[0]}") from e


def load_config(source: str, config: str) -> list[dict]:
    """Rows of one config from a local folder or a hub id, each checked for the needed fields."""
    folder = Path(source).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"data source {source!r} is a file; give a folder or a hub id")
    rows = _read_local(folder, config) if folder.is_dir() else _read_hub(source, config)
    if not rows:
        raise UserError(f"config {config!r} in {source} is empty")
    need = required_fields(config)
    for i, row in enumerate(rows):
        missing = [f for f in need if f not in row or row[f] is None]
        if missing:
            raise UserError(
                f"{source} config {config!r} row {i} lacks field {missing[0]!r}; "
                f"required: {', '.join(need)}"
            )
    return rows
