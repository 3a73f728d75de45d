"""The document benchmarks' data: MUSE (`muse-bench/MUSE-News`, `muse-bench/MUSE-Books`) and DUSK
(`AI-ISL/DUSK`) configs, splits and fields; documents chunked for unlearning; few-shot QA prompts.

Chunking follows open-unlearning's PretrainingDataset and DUSK's data module: the split's texts are
joined with a blank line, tokenised once and cut into pieces of `chunk_tokens` (BOS + chunk - 1
tokens; the last piece is shorter), with the loss on every token. QA prompts use the base-model
format both benchmarks evaluate with: `Question: q\\nAnswer: a` shots joined by a blank line.
"""

from __future__ import annotations

from collections.abc import Sequence

from unlearn_core.data.sources import load_rows
from unlearn_core.errors import UserError

TEXT = ("text",)
QA = ("question", "answer")
CONTINUATION = ("prompt", "gt")

# (config, split) -> fields; what a local copy must hold as well.
MUSE_SCHEMA = {
    **{("raw", s): TEXT for s in ("forget", "retain1", "retain2", "holdout")},
    **{("knowmem", s): QA for s in ("forget_qa", "retain_qa", "forget_qa_icl", "retain_qa_icl")},
    ("verbmem", "forget"): CONTINUATION,
    **{("privleak", s): TEXT for s in ("forget", "retain", "holdout")},
}
DUSK_RETAIN = (
    "retain_feature_story",
    "retain_interview",
    "retain_inverted_pyramid",
    "retain_listicle",
)
DUSK_SCHEMA = {
    **{("raw", s): TEXT for s in ("forget_chronological", *DUSK_RETAIN, "full")},
    **{
        (c, "eval"): QA
        for c in (
            "eval_general_qa",
            "eval_specific_forget_qa",
            "eval_specific_retain_qa",
            "eval_icl",
        )
    },
    ("eval_holdout", "eval"): TEXT,
    ("eval_verbatim", "eval"): CONTINUATION,
}
SCHEMAS = {"muse": MUSE_SCHEMA, "dusk": DUSK_SCHEMA}
# The splits that train: forget, and the retain pool (open-unlearning's MUSE default is retain1;
# DUSK pools its four retain documents).
TRAINING = {
    "muse": (("raw", "forget"), (("raw", "retain1"),)),
    "dusk": (("raw", "forget_chronological"), tuple(("raw", s) for s in DUSK_RETAIN)),
}
STOP_STRINGS = ("\n\n", "\nQuestion", "Question:")  # where a generated answer is cut


def load(family: str, source: str, config: str, split: str) -> list[dict]:
    """Rows of one (config, split) of a MUSE or DUSK data set, checked against its schema."""
    schema = SCHEMAS[family]
    if (config, split) not in schema:
        known = ", ".join(f"{c}/{s}" for c, s in schema)
        raise UserError(f"{family} has no config/split {config}/{split}; known: {known}")
    single = sum(c == config for c, _ in schema) == 1
    return load_rows(source, config, split, schema[(config, split)], single=single)


def texts(family: str, source: str, pairs: Sequence[tuple[str, str]]) -> list[str]:
    return [r["text"] for config, split in pairs for r in load(family, source, config, split)]


def chunk(tokenizer, texts: Sequence[str], chunk_tokens: int) -> list[dict[str, list[int]]]:
    """The texts joined by a blank line, tokenised, cut into BOS + (chunk_tokens - 1) pieces;
    labels = input_ids (the BOS is never predicted: the shift drops it)."""
    if chunk_tokens < 2:
        raise UserError(f"chunk length must be at least 2 tokens, got {chunk_tokens}")
    ids = tokenizer("\n\n".join(texts), add_special_tokens=False)["input_ids"]
    step = chunk_tokens - 1
    pieces = [[tokenizer.bos_token_id, *ids[i : i + step]] for i in range(0, len(ids), step)]
    return [{"input_ids": p, "labels": list(p)} for p in pieces]


def encode_text(tokenizer, text: str, max_tokens: int) -> dict[str, list[int]]:
    """One text as BOS + its first max_tokens - 1 tokens, every token labelled (MIA scoring)."""
    ids = [tokenizer.bos_token_id, *tokenizer(text, add_special_tokens=False)["input_ids"]]
    ids = ids[:max_tokens]
    return {"input_ids": ids, "labels": list(ids)}


def encode_continuation(tokenizer, prompt: str, gt: str, max_tokens: int) -> dict[str, list[int]]:
    """BOS + prompt, then " " + gt labelled (verbmem: open-unlearning puts a space between)."""
    p = [tokenizer.bos_token_id, *tokenizer(prompt, add_special_tokens=False)["input_ids"]]
    g = tokenizer(" " + gt, add_special_tokens=False)["input_ids"]
    ids = (p + g)[:max_tokens]
    return {"input_ids": ids, "labels": ([-100] * len(p) + g)[:max_tokens]}


def few_shot_prompt(shots: Sequence[dict], question: str) -> str:
    """`Question: q\\nAnswer: a` for each shot, a blank line between, then the question."""
    parts = [f"Question: {s['question']}\nAnswer: {s['answer']}" for s in shots]
    return "\n\n".join([*parts, f"Question: {question}\nAnswer:"])


def cut_at_stop(text: str, stops: Sequence[str] = STOP_STRINGS) -> str:
    """A generated answer up to the first stop string, stripped."""
    ends = [i for s in stops if (i := text.find(s)) >= 0]
    return (text[: min(ends)] if ends else text).strip()
