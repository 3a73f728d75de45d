"""Encoded views of forget and retain rows that methods read from a batch: `forget` and `retain`
(question, answer) for every method, plus the extra views a method declares in its registry entry:
forget_idk / retain_idk (question + a refusal), forget_alt (question + row["alternate"], AltPO) and
forget_sensitive (the forget encoding with labels only on the answer's sensitive tokens, PALU)."""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from functools import cache
from importlib import resources

from unlearn_core.data.format import PromptFormat, encode_qa, encode_qa_spans
from unlearn_core.errors import UserError

FORGET_VIEWS = ("forget", "forget_idk", "forget_alt", "forget_sensitive")
RETAIN_VIEWS = ("retain", "retain_idk")

# Fallback sensitive spans for rows without `answer_spans` (real TOFU): capitalised words and
# numbers, minus capitalised function words that mostly start sentences. A heuristic, not PALU's
# GPT annotation: it misses lower-case facts (genres, professions) and marks any capitalised word.
_SALIENT = re.compile(r"\b[A-Z][\w'’-]*|\b\d(?:[\d,.:/-]*\d)?")
_COMMON = frozenset(
    "A An The He She His Her Hers It Its They Their Them This That These Those There Here In On At "
    "As By For From With Of To Yes No I We Our One Some Many Most Although While However Despite "
    "Born Being After Before During When Where What Which Who Why How Throughout Also".split()
)


@cache
def refusals() -> tuple[str, ...]:
    """The shipped refusal answers (unlearn_core/data/idk.txt), one per line."""
    text = resources.files("unlearn_core.data").joinpath("idk.txt").read_text(encoding="utf-8")
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def fallback_spans(answer: str) -> list[list[int]]:
    """[start, end) character spans of capitalised non-function words and numbers in `answer`."""
    return [[m.start(), m.end()] for m in _SALIENT.finditer(answer) if m.group() not in _COMMON]


def _refusal_picker(seed: int, view: str):
    # one seeded stream per view, so adding a view never changes another view's refusals
    rng = random.Random(f"{view}:{seed}")
    pool = refusals()
    return lambda: rng.choice(pool)


def _forget_view(tok, fmt: PromptFormat, row: dict, view: str, refusal) -> dict[str, list[int]]:
    q = row["question"]
    if view == "forget":
        return encode_qa(tok, q, row["answer"], fmt)
    if view == "forget_idk":
        return encode_qa(tok, q, refusal(), fmt)
    if view == "forget_alt":
        if "alternate" not in row:
            raise UserError(
                "the forget_alt view needs rows with an 'alternate' answer "
                "(altpo.make_alternates generates them)"
            )
        return encode_qa(tok, q, row["alternate"], fmt)
    spans = row.get("answer_spans")
    spans = fallback_spans(row["answer"]) if spans is None else spans
    return encode_qa_spans(tok, q, row["answer"], spans, fmt)


def build_views(
    tok,
    fmt: PromptFormat,
    forget_rows: Sequence[dict],
    retain_rows: Sequence[dict],
    views: Sequence[str],
    seed: int = 0,
) -> tuple[list[dict], list[dict]]:
    """(forget examples, retain examples), each a dict view name -> encoding. `forget` is always
    built; `retain` whenever any retain view is asked for (else the retain list is empty). Each
    row's refusal is drawn once from random.Random(seed) per view, so it is fixed across epochs
    (as in closer-look; open-unlearning redraws per access)."""
    unknown = [v for v in views if v not in FORGET_VIEWS + RETAIN_VIEWS]
    if unknown:
        raise UserError(
            f"unknown batch view {unknown[0]!r}; known: {', '.join(FORGET_VIEWS + RETAIN_VIEWS)}"
        )
    f_views = ["forget"] + [v for v in FORGET_VIEWS[1:] if v in views]
    pick = {v: _refusal_picker(seed, v) for v in ("forget_idk", "retain_idk")}
    forget = [
        {v: _forget_view(tok, fmt, r, v, pick["forget_idk"]) for v in f_views} for r in forget_rows
    ]
    if not any(v in RETAIN_VIEWS for v in views):
        return forget, []
    retain = []
    for r in retain_rows:
        example = {"retain": encode_qa(tok, r["question"], r["answer"], fmt)}
        if "retain_idk" in views:
            example["retain_idk"] = encode_qa(tok, r["question"], pick["retain_idk"](), fmt)
        retain.append(example)
    return forget, retain
