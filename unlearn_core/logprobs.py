"""Shared maths on answer tokens: per-token log-probs, sequence NLL, masked KL, preference
log-ratios.

Every method and the evaluation call these; the next-token shift and the -100 mask live here once.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

IGNORE = -100


def shift(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Align logits at t with the label at t+1. Returns (logits, targets, mask); masked targets
    are 0."""
    logits = logits[:, :-1, :]  # (B, T-1, V)
    labels = labels[:, 1:]  # (B, T-1)
    mask = labels != IGNORE
    return logits, labels.masked_fill(~mask, 0), mask


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(y_t | y_<t) of each answer token (0 where masked) and the mask, both (B, T-1)."""
    logits, targets, mask = shift(logits, labels)
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return logp * mask, mask


def sequence_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum of answer-token NLL per sequence, -log pi(y|x): shape (B,)."""
    logp, _ = token_logprobs(logits, labels)
    return -logp.sum(-1)


def mean_nll(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean answer-token NLL over the whole batch (the Hugging Face `outputs.loss`), a scalar."""
    logp, mask = token_logprobs(logits, labels)
    return -logp.sum() / mask.sum().clamp(min=1)


def answer_lengths(labels: torch.Tensor) -> torch.Tensor:
    """Number of answer tokens per sequence (B,), counting only positions that are predicted."""
    return (labels[:, 1:] != IGNORE).sum(-1)


def answer_kl(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(p_ref || p_theta) averaged over answer tokens only (never prompt or padding positions)."""
    logits, _, mask = shift(logits, labels)
    ref_logits = ref_logits[:, :-1, :]
    logp = torch.log_softmax(logits.float(), dim=-1)
    ref_logp = torch.log_softmax(ref_logits.float(), dim=-1)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)  # (B, T-1)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


def npo_loss(logp_theta: torch.Tensor, logp_ref: torch.Tensor, beta: float) -> torch.Tensor:
    """NPO: -(2/beta) mean log sigmoid(-beta (log pi_theta - log pi_ref)) on sequence log-probs."""
    return -(2.0 / beta) * F.logsigmoid(-beta * (logp_theta - logp_ref)).mean()


def dpo_loss(win_ratio: torch.Tensor, lose_ratio: torch.Tensor, beta: float) -> torch.Tensor:
    """DPO on log-ratios r = log pi_theta - log pi_ref: -(2/beta) mean log sigmoid(beta (r_w - r_l))
    over the batch."""
    return -(2.0 / beta) * F.logsigmoid(beta * (win_ratio - lose_ratio)).mean()


def forward(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits of a causal LM for a tokenised batch (input_ids, attention_mask)."""
    return model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).logits


@torch.no_grad()
def reference_logits(ref_model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits of the frozen reference model; no graph is kept."""
    return forward(ref_model, inputs)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of per-token values over the positions where mask is true (0 if there are none)."""
    return (values * mask).sum() / mask.sum().clamp(min=1)


def soft_cross_entropy(logits: torch.Tensor, target_logits: torch.Tensor) -> torch.Tensor:
    """Per-position CE(softmax(target_logits), softmax(logits)) = -sum_v q_v log p_v, shape (...).
    The target carries no gradient; a -inf target logit gives q_v = 0 (how CE-U drops y_t)."""
    q = torch.softmax(target_logits.detach().float(), dim=-1)
    return -(q * torch.log_softmax(logits.float(), dim=-1)).sum(-1)


def sequence_logratio(
    model: torch.nn.Module, ref_model: torch.nn.Module, inputs: dict[str, torch.Tensor]
) -> torch.Tensor:
    """log pi_theta(y|x) - log pi_ref(y|x) per sequence (B,), on answer-token sums (DPO-style)."""
    labels = inputs["labels"]
    return sequence_nll(reference_logits(ref_model, inputs), labels) - sequence_nll(
        forward(model, inputs), labels
    )


def weighted_ascent(
    logits: torch.Tensor, labels: torch.Tensor, weight: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Token-weighted gradient ascent (WGA, SatImp): -mean_t(w_t * NLL_t) = mean_t(w_t log p_t)
    over answer tokens, with w = weight(p) computed on the detached token probability p."""
    logp, mask = token_logprobs(logits, labels)  # (B, T-1)
    return masked_mean(weight(logp.detach().exp()) * logp, mask)
