"""AltPO: DPO preferring the target model's own plausible alternate answers over the true ones.

Mekala et al. 2024, "Alternate Preference Optimization for Unlearning Factual Knowledge in Large
Language Models" (https://arxiv.org/abs/2409.13474), in open-unlearning's form (community/methods/
AltPO: DPO plus retain NLL, without the paper's extra terms): with r = log pi_theta - log pi_ref on
answer-token sums, L = -gamma (2/beta) E log sigmoid(beta (r(alternate) - r(answer))) + alpha R.
Defaults beta 0.1, gamma = alpha = 1 (open-unlearning DPO.yaml, the centre of AltPO's run.sh grid).
The alternates come from `make_alternates`, sampled once from the target model before training:
N_ALTERNATES per question, each its own training row beside the true answer, as in open-unlearning
(generate.py's 5 repeats, one JSON row each, read row by row by QAwithAlternateDataset), so an
epoch passes each question N_ALTERNATES times (run.sh trains 2 epochs of that file). Unlike
open-unlearning, near-copies of the true answer are rejected (`near_copies`).
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from unlearn_core.data.format import PromptFormat, collate, encode_prompt
from unlearn_core.data.views import refusals
from unlearn_core.evaluate import end_tokens
from unlearn_core.methods._dpo import preference_loss
from unlearn_core.methods._retain import check_retain_loss
from unlearn_core.metrics.text import rouge_scores

log = logging.getLogger(__name__)

# open-unlearning's AltPO generate.yaml `repeats: 5`: five sampled alternates per question
N_ALTERNATES = 5
# An alternate keeping >= 90% of the true answer's words in order (ROUGE-L recall, the forget ROUGE
# TOFU reports) would teach the model to prefer an answer that metric scores as remembered.
NEAR_COPY_RECALL = 0.9
_WORD = re.compile(r"[^\W_]")  # a letter or digit: an alternate without one is empty

# Our wording of AltPO's generation prompt: keep the answer's form, change every fact in it.
INSTRUCTION = (
    "Here is a question and its correct answer.\nQuestion: {question}\nAnswer: {answer}\n"
    "Write another answer to the question that sounds just as plausible but is false: change "
    "every fact in it (names, places, dates, titles, numbers), keep the same style and length, "
    "and reply with the new answer only."
)


@dataclass(frozen=True)
class Hparams:
    beta: float = 0.1  # inverse temperature
    gamma: float = 1.0  # forget (preference) weight
    alpha: float = 1.0  # retain weight
    retain_loss: str = "nll"  # nll | kl | none

    def __post_init__(self) -> None:
        check_retain_loss(self.retain_loss)
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")


def needs_reference(hp: Hparams) -> bool:
    return True


def loss(batch: dict, model: torch.nn.Module, ref_model: torch.nn.Module, hp: Hparams):
    return preference_loss(batch, model, ref_model, hp, win="forget_alt")


@torch.no_grad()
def sample_answers(
    model: torch.nn.Module,
    tok,
    fmt: PromptFormat,
    prompts: Sequence[str],
    seed: int,
    max_new_tokens: int,
    batch_size: int,
) -> list[str]:
    """One temperature-1 sample (no top-k/top-p) per prompt, reproducible from `seed` on a given
    device and batch size. The global RNG is forked, so the caller's random state is untouched."""
    encoded = [{"input_ids": encode_prompt(tok, p, fmt)} for p in prompts]
    device = next(model.parameters()).device
    out: list[str] = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for start in range(0, len(encoded), batch_size):
            batch = collate(encoded[start : start + batch_size], tok.pad_token_id, left=True)
            gen = model.generate(
                input_ids=batch["input_ids"].to(device),
                attention_mask=batch["attention_mask"].to(device),
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                max_new_tokens=max_new_tokens,
                use_cache=True,
                pad_token_id=tok.pad_token_id,
                eos_token_id=end_tokens(model, tok),
            )
            new = gen[:, batch["input_ids"].shape[1] :]
            out += [tok.decode(row, skip_special_tokens=True).strip() for row in new]
    return out


def make_alternates(
    model: torch.nn.Module,
    tok,
    fmt: PromptFormat,
    rows: Sequence[dict],
    seed: int,
    n: int = N_ALTERNATES,
    instruct: bool = True,
    max_new_tokens: int | None = None,
    batch_size: int = 32,
    tries: int = 16,
) -> list[dict]:
    """n rows per input row (question-major), each a copy with an "alternate" answer sampled once
    from `model` (the target, before unlearning). With `instruct`, the model is asked to rewrite
    the answer with every fact changed (instruction-following targets); otherwise it answers the
    plain question (tiny built-in models). A sample that is empty or a near-copy of the true answer
    (`near_copies`) is redrawn from the same prompt, up to `tries` rounds; then `_fill` settles
    what is left. max_new_tokens defaults to twice the longest true answer (in tokens) plus 8:
    alternates keep the answers' length."""
    assert n >= 1, f"n must be >= 1, got {n}"
    expanded = [r for r in rows for _ in range(n)]
    answers = [r["answer"] for r in expanded]
    if max_new_tokens is None:
        longest = max(len(tok(r["answer"], add_special_tokens=False)["input_ids"]) for r in rows)
        max_new_tokens = 2 * longest + 8
    if instruct:
        prompts = [INSTRUCTION.format(question=r["question"], answer=r["answer"]) for r in expanded]
    else:
        prompts = [r["question"] for r in expanded]
    was_training = model.training
    model.eval()
    try:
        alts = sample_answers(model, tok, fmt, prompts, seed, max_new_tokens, batch_size)
        for attempt in range(1, tries + 1):
            bad = [i for i, b in enumerate(near_copies(alts, answers)) if b]
            if not bad:
                break
            redo = sample_answers(
                model,
                tok,
                fmt,
                [prompts[i] for i in bad],
                seed + attempt,
                max_new_tokens,
                batch_size,
            )
            for i, a in zip(bad, redo, strict=True):
                alts[i] = a
    finally:
        model.train(was_training)
    alts = _fill(alts, answers, n, seed)
    return [{**r, "alternate": a} for r, a in zip(expanded, alts, strict=True)]


def near_copies(alternates: Sequence[str], answers: Sequence[str]) -> list[bool]:
    """Per pair: the alternate is unusable as DPO's preferred answer. Empty (no word character),
    or ROUGE-L recall against the true answer >= NEAR_COPY_RECALL, scored as TOFU's forget ROUGE is
    (rouge_score: lower case, punctuation dropped, Porter stems). That catches exact copies, case,
    space and punctuation variants, the answer with text added, and a long answer with one word
    changed (19 of 20 words kept: recall 0.95)."""
    recall = rouge_scores(list(answers), list(alternates))["rougeL_recall"]
    pairs = zip(alternates, recall, strict=True)
    return [not _WORD.search(a) or r >= NEAR_COPY_RECALL for a, r in pairs]


def _fill(alts: list[str], answers: list[str], n: int, seed: int) -> list[str]:
    """Every question keeps n rows (its weight in training, as in open-unlearning's file of n
    alternates per question): a slot still a near-copy after the redraws takes the question's
    usable alternates in turn; a question with none takes refusals (IdkDPO's preferred answer),
    drawn from random.Random(seed). Both cases are counted in a warning."""
    bad = near_copies(alts, answers)
    rng = random.Random(f"altpo:{seed}")
    out, reused, refused = list(alts), 0, 0
    for q in range(0, len(alts), n):
        slots = range(q, q + n)
        good = [alts[i] for i in slots if not bad[i]]
        for k, i in enumerate(i for i in slots if bad[i]):
            if good:
                out[i], reused = good[k % len(good)], reused + 1
            else:
                out[i], refused = rng.choice(refusals()), refused + 1
    if reused or refused:
        log.warning(
            "%d of %d alternates stayed empty or near-copies of the answer after the redraws: "
            "%d reuse another alternate of the question, %d (questions with none) are refusals",
            reused + refused,
            len(alts),
            reused,
            refused,
        )
    return out
