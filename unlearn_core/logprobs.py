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
    """log p(y_t | y_<t) of each answer token (0 where masked) and the mask, both (B, T-1).
    Computed in chunks of positions (_TokenLogprobs): never an fp32 (B, T, V) tensor."""
    logits, targets, mask = shift(logits, labels)
    return _TokenLogprobs.apply(logits, targets) * mask, mask


# elements of one chunk of (B, positions, V) fp32 log-probs (16 MiB): the extra memory of
# token_logprobs and answer_kl, forward and backward, whatever the batch, length and vocabulary
CHUNK_ELEMENTS = 2**22


def position_chunks(logits: torch.Tensor) -> list[slice]:
    """Slices of positions (dim 1) holding about CHUNK_ELEMENTS elements each, at least one."""
    b, t, v = logits.shape
    step = max(1, CHUNK_ELEMENTS // max(1, b * v))
    return [slice(s, s + step) for s in range(0, t, step)]


class _TokenLogprobs(torch.autograd.Function):
    """log_softmax(logits.float()).gather(targets), chunk by chunk: the same per-row kernel as
    the one-shot expression, so the same values; the backward recomputes each chunk's log-softmax
    (saving only the logits, which exist anyway) and gives d logp_t / d x_tv = 1[v = y_t] - p_tv,
    as log_softmax's backward does, in the logits' dtype."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        out = torch.empty(targets.shape, dtype=torch.float32, device=logits.device)  # (B, T)
        for sl in position_chunks(logits):
            logp = torch.log_softmax(logits[:, sl].float(), dim=-1)  # (B, chunk, V)
            out[:, sl] = logp.gather(-1, targets[:, sl, None]).squeeze(-1)
        ctx.save_for_backward(logits, targets)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, targets = ctx.saved_tensors
        grad_logits = torch.empty_like(logits)
        for sl in position_chunks(logits):
            g = grad[:, sl, None]  # (B, chunk, 1)
            d = torch.log_softmax(logits[:, sl].float(), dim=-1).exp_().mul_(-g)
            grad_logits[:, sl] = d.scatter_add_(-1, targets[:, sl, None], g)
        return grad_logits, None


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
    """KL(p_ref || p_theta) averaged over answer tokens only (never prompt or padding positions).
    Computed in chunks of positions (_TokenKL); the reference carries no gradient."""
    logits, _, mask = shift(logits, labels)
    kl = _TokenKL.apply(logits, ref_logits[:, :-1, :].detach())  # (B, T-1)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


class _TokenKL(torch.autograd.Function):
    """sum_v q_v (log q_v - log p_v) per position, q = softmax(ref), p = softmax(logits), in fp32
    chunk by chunk; the backward recomputes each chunk and applies log_softmax's backward to
    d kl / d log p = -q: -q g + p sum_v(q g), as autograd does on the one-shot expression."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
        out = torch.empty(logits.shape[:2], dtype=torch.float32, device=logits.device)  # (B, T)
        for sl in position_chunks(logits):
            logp = torch.log_softmax(logits[:, sl].float(), dim=-1)  # (B, chunk, V)
            ref_logp = torch.log_softmax(ref_logits[:, sl].float(), dim=-1)
            out[:, sl] = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
        ctx.save_for_backward(logits, ref_logits)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, ref_logits = ctx.saved_tensors
        grad_logits = torch.empty_like(logits)
        for sl in position_chunks(logits):
            q = torch.log_softmax(ref_logits[:, sl].float(), dim=-1).exp_()
            d = q.mul_(-grad[:, sl, None])  # d kl / d log p, times the upstream gradient
            p = torch.log_softmax(logits[:, sl].float(), dim=-1).exp_()
            grad_logits[:, sl] = d - p * d.sum(-1, keepdim=True)
        return grad_logits, None


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
