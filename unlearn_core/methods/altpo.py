"""AltPO: DPO preferring the target model's own plausible alternate answers over the true ones.

Mekala et al. 2024, "Alternate Preference Optimization for Unlearning Factual Knowledge in Large
Language Models" (https://arxiv.org/abs/2409.13474), in open-unlearning's form (community/methods/
AltPO: DPO plus retain NLL, without the paper's extra terms): with r = log pi_theta - log pi_ref on
answer-token sums, L = -gamma (2/beta) E log sigmoid(beta (r(alternate) - r(answer))) + alpha R.
Defaults beta 0.1, gamma = alpha = 1 (open-unlearning DPO.yaml, the centre of AltPO's run.sh grid).
The alternates come from `make_alternates`, sampled once from the target model before training.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from unlearn_core.data.format import PromptFormat, collate, encode_prompt
from unlearn_core.evaluate import end_tokens
from unlearn_core.methods._dpo import preference_loss
from unlearn_core.methods._retain import check_retain_loss

log = logging.getLogger(__name__)

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
                do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                max_new_tokens=max_new_tokens, use_cache=True,
                pad_token_id=tok.pad_token_id, eos_token_id=end_tokens(model, tok),
            )  # fmt: skip
            new = gen[:, batch["input_ids"].shape[1] :]
            out += [tok.decode(row, skip_special_tokens=True).strip() for row in new]
    return out


def make_alternates(
    model: torch.nn.Module,
    tok,
    fmt: PromptFormat,
    rows: Sequence[dict],
    seed: int,
    n: int = 1,
    instruct: bool = True,
    max_new_tokens: int | None = None,
    batch_size: int = 32,
    tries: int = 16,
) -> list[dict]:
    """n rows per input row (question-major), each a copy with an "alternate" answer sampled once
    from `model` (the target, before unlearning). With `instruct`, the model is asked to rewrite
    the answer with every fact changed (instruction-following targets); otherwise it answers the
    plain question (tiny built-in models). Samples that are empty or repeat the true answer are
    redrawn from the plain question, up to `tries` rounds. max_new_tokens defaults to twice the
    longest true answer (in tokens) plus 8: alternates keep the answers' length."""
    assert n >= 1, f"n must be >= 1, got {n}"
    expanded = [r for r in rows for _ in range(n)]
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
            bad = [i for i, a in enumerate(alts) if _same(a, expanded[i]["answer"])]
            if not bad:
                break
            questions = [expanded[i]["question"] for i in bad]
            redo = sample_answers(model, tok, fmt, questions, seed + attempt, max_new_tokens,
                                  batch_size)  # fmt: skip
            for i, a in zip(bad, redo, strict=True):
                alts[i] = a
    finally:
        model.train(was_training)
    left = sum(_same(a, r["answer"]) for a, r in zip(alts, expanded, strict=True))
    if left:
        log.warning("%d of %d alternates are empty or repeat the true answer", left, len(alts))
    return [{**r, "alternate": a} for r, a in zip(expanded, alts, strict=True)]


def _same(alternate: str, answer: str) -> bool:
    """Empty, or the true answer up to case and surrounding space."""
    return not alternate or alternate.strip().lower() == answer.strip().lower()
