"""Selective gradient ascent (SGA): ascend only on forget sequences the model still memorises.

Barbulescu & Triantafillou 2024, "To Each (Textual Sequence) Its Own: Improving Memorized-Data
Unlearning in Large Language Models" (arXiv 2405.03097), the selection DUSK's losses.py uses for
TAU: a sequence is selected when its mean answer-token probability mean_t p(y_t | y_<t) >= threshold
(fallback: the batch's most memorised sequence); L = -mean over selected of NLL_sum.
Fixes DUSK's bug of gathering the probabilities without the next-token shift. Default threshold 0.7
(DUSK). No retain term.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearn_core.logprobs import forward, token_logprobs


@dataclass(frozen=True)
class Hparams:
    threshold: float = 0.7  # minimum mean token probability of a selected sequence (DUSK)

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")


def needs_reference(hp: Hparams) -> bool:
    return False


def selected(mean_prob: torch.Tensor, threshold: float) -> torch.Tensor:
    """Boolean (B,): mean probability >= threshold, else only the argmax sequence."""
    keep = mean_prob >= threshold
    if keep.any():
        return keep
    return torch.nn.functional.one_hot(mean_prob.argmax(), mean_prob.numel()).bool()


def loss(batch: dict, model: torch.nn.Module, ref_model: torch.nn.Module | None, hp: Hparams):
    forget = batch["forget"]
    logp, mask = token_logprobs(forward(model, forget), forget["labels"])  # (B, T-1), shifted
    mean_prob = (logp.detach().exp() * mask).sum(-1) / mask.sum(-1).clamp(min=1)  # (B,)
    keep = selected(mean_prob, hp.threshold)
    nll = -logp.sum(-1)  # (B,) NLL_sum per sequence
    total = -nll[keep].mean()
    return total, {
        "forget_nll_sum": nll[keep].mean().item(),
        "selected_frac": keep.float().mean().item(),
        "forget_mean_prob": mean_prob.mean().item(),
    }
