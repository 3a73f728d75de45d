"""Flags generated from the config dataclasses: one per field, named as the field (--batch-size
sets batch_size), its help the field's comment in the source, its default the field's (shown in
the help, never repeated: a flag left out stays out of the config, so the field decides)."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import io
import textwrap
import tokenize
import types
import typing


@functools.cache
def field_comments(cls: type) -> dict[str, str]:
    """Each field's comment: the one trailing its line, else the block just above it."""
    src = textwrap.dedent(inspect.getsource(cls))
    lines = src.splitlines()
    comments = {
        t.start[0]: t.string.lstrip("#").strip()
        for t in tokenize.generate_tokens(io.StringIO(src).readline)
        if t.type == tokenize.COMMENT
    }
    out = {}
    for node in ast.parse(src).body[0].body:
        if not isinstance(node, ast.AnnAssign):
            continue
        trailing = [comments[i] for i in range(node.lineno, node.end_lineno + 1) if i in comments]
        above, i = [], node.lineno - 1
        while i in comments and lines[i - 1].lstrip().startswith("#"):
            above.insert(0, comments[i])
            i -= 1
        out[node.target.id] = " ".join(trailing or above)
    return out


def _plain_type(hint: object) -> type:
    """int for `int`, str for `str | None` (the only unions the configs use)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
    assert hint in (int, float, str), f"no flag type for {hint!r}"
    return hint


def add_fields(
    p: argparse.ArgumentParser,
    cls: type,
    names: tuple[str, ...] | list[str],
    choices: dict[str, tuple[str, ...]] | None = None,
    shown: dict[str, str] | None = None,
) -> None:
    """--<name> for each field of `cls` in `names`; `choices` lists a closed set's values (the
    dataclass checks them, with its own message), `shown` a default that is not the field's
    literal one (e.g. "the benchmark's")."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    helps = field_comments(cls)
    for name in names:
        f = fields[name]
        assert helps.get(name), f"{cls.__name__}.{name} needs a comment: it is the flag's help"
        text, default = helps[name], (shown or {}).get(name, f.default)
        if default is None and "None: " in text:  # "what; None: words": "what (default: words)"
            text, _, default = text.rpartition("None: ")
            text = text.rstrip("; ")
        elif default is None:
            default = "none"
        values = (choices or {}).get(name)
        if hints[name] is bool:  # --name / --no-name; left out, the field decides
            p.add_argument(
                f"--{name.replace('_', '-')}",
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{text} (default: {'on' if default else 'off'})".replace("%", "%%"),
            )
            continue
        p.add_argument(
            f"--{name.replace('_', '-')}",
            type=_plain_type(hints[name]),
            metavar="{" + ",".join(values) + "}" if values else None,
            help=f"{text} (default: {default})".replace("%", "%%"),
        )
