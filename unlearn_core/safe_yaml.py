"""The one YAML reader for files a user hands us (sweep files, exported configs): UTF-8 only,
bounded in size and nesting, no anchors or aliases (an alias bomb expands before any check could
run), no duplicate keys, and each value checked against the dataclass field it feeds."""

from __future__ import annotations

from pathlib import Path

import yaml

from unlearn_core.config import check_fields  # noqa: F401 (what a reader of YAML calls next)
from unlearn_core.errors import UserError

MAX_BYTES = 1 << 20  # a sweep file or an export is a few hundred bytes
MAX_DEPTH = 20  # the deepest file we write nests 3 levels


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate and non-string keys while building a mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, str):
                raise UserError(f"line {key_node.start_mark.line + 1}: key {key!r} is not a name")
            if key in seen:
                raise UserError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _check_events(text: str) -> None:
    """One pass over the parser's events (iterative, so deep nesting cannot overflow the stack):
    refuse anchors, aliases and nesting deeper than MAX_DEPTH before anything is composed."""
    depth = 0
    for ev in yaml.parse(text, Loader=yaml.SafeLoader):
        line = ev.start_mark.line + 1
        if isinstance(ev, yaml.AliasEvent) or getattr(ev, "anchor", None):
            raise UserError(f"line {line}: anchors and aliases (&, *) are not accepted")
        if isinstance(ev, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise UserError(f"line {line}: nested deeper than {MAX_DEPTH} levels")
        elif isinstance(ev, yaml.CollectionEndEvent):
            depth -= 1


def read(path: str | Path, missing: str) -> object:
    """The document of a YAML file, or one UserError line naming the path and what is wrong;
    `missing` is the message if there is no such file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(missing)
    try:
        if p.stat().st_size > MAX_BYTES:
            raise UserError(f"{path} is larger than {MAX_BYTES >> 20} MiB; not a config file")
        raw = p.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    try:
        _check_events(text)
        return yaml.load(text, Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise UserError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    except RecursionError:  # only if a deep document slipped past _check_events
        raise UserError(f"{path}: nested too deeply") from None
