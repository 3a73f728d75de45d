"""Frozen config dataclasses to and from plain dicts (JSON/YAML-safe: tuples become lists), with
unknown keys and wrongly typed values rejected as UserErrors naming the key and what is accepted."""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from typing import Any

from unlearn_core.errors import UserError


def to_plain(value: Any) -> Any:
    """Dataclasses to dicts and tuples to lists, recursively: what json and yaml.safe_dump take."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return value


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_plain(cls: type, d: Any, where: str) -> Any:
    """Build dataclass `cls` from a dict; `where` names it in errors ("train", "job", ...)."""
    if not isinstance(d, dict):
        raise UserError(f"{where} must be a mapping of field names to values, got {d!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in d if k not in fields]
    if unknown:
        raise UserError(f"{where} has no field {unknown[0]!r}; accepted: {', '.join(fields)}")
    missing = [n for n, f in fields.items() if n not in d and _required(f)]
    if missing:
        raise UserError(f"{where} needs field {missing[0]!r}")
    hints = _hints(cls)
    return cls(**{k: _convert(v, hints[k], f"{where}.{k}") for k, v in d.items()})


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _convert(value: Any, hint: Any, where: str) -> Any:
    """Check `value` against a field's type hint; lists become tuples, dicts nested dataclasses."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]  # X | None is the only union used
        return _convert(value, hint, where)
    if dataclasses.is_dataclass(hint):
        return from_plain(hint, value, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise UserError(f"{where} must be a list, got {value!r}")
        return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise UserError(f"{where} must be a mapping, got {value!r}")
        return {k: tuple(v) if isinstance(v, list) else v for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:  # PyYAML reads 1e-5 (no dot) as a string: YAML 1.1 floats need one
            return float(value)
        except ValueError:
            pass
    if hint in (int, float, str, bool) and (
        not isinstance(value, hint) or (hint is int and isinstance(value, bool))
    ):
        raise UserError(f"{where} must be {hint.__name__}, got {value!r}")
    return value


def check_fields(doc: dict, cls: type, where: str, extra: dict[str, Any] | None = None) -> dict:
    """`doc` with each key that is a field of `cls` (or in `extra`: name -> type hint) checked
    against its type hint, floats finite and booleans not numbers: one line naming the key, the
    expected type and the value. Other keys are left to the caller (unknown-key messages)."""
    hints = {f.name: _hints(cls)[f.name] for f in dataclasses.fields(cls)} | (extra or {})
    out = dict(doc)
    for key, value in doc.items():
        if key not in hints or dataclasses.is_dataclass(value):
            continue
        out[key] = _convert(value, hints[key], f"{where}: {key}")
        if isinstance(out[key], float) and not math.isfinite(out[key]):
            raise UserError(f"{where}: {key} must be a finite number, got {value!r}")
    return out
