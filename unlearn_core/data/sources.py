"""Read one (config, split) of a benchmark's data set from the hub or a local copy, with the same
names and fields whatever the source; each row is checked for the fields the benchmark needs.

Local layouts, looked up in this order for config C and split S:
    <folder>/C/S.json | S.jsonl | S.parquet      one file per split
    <folder>/C/                                  `save_to_disk` of a DatasetDict (or of a Dataset
                                                 when the config has a single split)
    <folder>/C.json | C.jsonl | C.parquet        single-split configs (TOFU's `train`)
A hub id (`org/name`) goes through `datasets.load_dataset(id, C, split=S)`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from unlearn_core.errors import UserError

FILE_SUFFIXES = (".json", ".jsonl", ".parquet")


def _read_file(file: Path) -> list[dict]:
    if file.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:  # plain Python values: nulls stay None and lists stay lists, as from JSON
            return pq.read_table(file).to_pylist()
        except Exception as e:  # pyarrow raises several types for a damaged file
            raise UserError(f"{file} is not a readable parquet file: {e}") from e
    text = file.read_text()
    try:
        if file.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        rows = json.loads(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{file} is not valid JSON: {e}") from e
    if not isinstance(rows, list):
        raise UserError(f"{file} must hold a list of records")
    return rows


def _first_file(stem: Path) -> Path | None:
    return next((f for s in FILE_SUFFIXES if (f := stem.with_name(stem.name + s)).is_file()), None)


def _read_saved(folder: Path, split: str, single: bool) -> list[dict] | None:
    """A `save_to_disk` folder: a DatasetDict's split, or a Dataset if the config has one split."""
    if (folder / "dataset_dict.json").is_file():
        from datasets import load_from_disk

        saved = load_from_disk(str(folder))
        if split not in saved:
            raise UserError(f"{folder} has no split {split!r}; it holds: {', '.join(saved)}")
        return saved[split].to_list()
    if (folder / "dataset_info.json").is_file() and single:
        from datasets import load_from_disk

        return load_from_disk(str(folder)).to_list()
    return None


def read_local(folder: Path, config: str, split: str, single: bool) -> list[dict]:
    """Rows of (config, split) from a local folder in any of the module's layouts."""
    if (file := _first_file(folder / config / split)) is not None:
        return _read_file(file)
    saved = _read_saved(folder / config, split, single) if (folder / config).is_dir() else None
    if saved is not None:
        return saved
    if single and (file := _first_file(folder / config)) is not None:
        return _read_file(file)
    looked = f"{config}/{split}.json|.jsonl|.parquet, {config}/ (save_to_disk)"
    if single:
        looked += f", {config}.json|.jsonl|.parquet"
    raise UserError(
        f"data folder {folder} has no config {config!r} split {split!r} (looked for {looked})"
    )


def read_hub(repo: str, config: str, split: str) -> list[dict]:
    from datasets import load_dataset

    try:
        return load_dataset(repo, config, split=split).to_list()
    except Exception as e:  # the hub raises many types: offline, missing config, auth
        raise UserError(
            f"cannot load {repo} config {config!r} split {split!r}: {str(e).splitlines()[0]}"
        ) from e


def load_rows(
    source: str, config: str, split: str, fields: Sequence[str], single: bool = False
) -> list[dict]:
    """Rows of one (config, split) from a local folder or a hub id, each checked for `fields`.
    `single`: the config has only this split, so `<config>.json` or a Dataset folder counts."""
    folder = Path(source).expanduser()
    if folder.exists() and not folder.is_dir():
        raise UserError(f"data source {source!r} is a file; give a folder or a hub id")
    rows = (
        read_local(folder, config, split, single)
        if folder.is_dir()
        else read_hub(source, config, split)
    )
    if not rows:
        raise UserError(f"config {config!r} split {split!r} in {source} is empty")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise UserError(
                f"{source} config {config!r} split {split!r} row {i} is not a record "
                f"(got {type(row).__name__}); each row must map field names to values"
            )
        missing = [f for f in fields if f not in row or row[f] is None]
        if missing:
            raise UserError(
                f"{source} config {config!r} split {split!r} row {i} lacks field "
                f"{missing[0]!r}; required: {', '.join(fields)}"
            )
    return rows
