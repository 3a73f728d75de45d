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
    # chosen on the device: `if keep.any()` reads it on the host, and so does one_hot (its
    # bounds check)
    top1 = torch.arange(mean_prob.numel(), device=mean_prob.device) == mean_prob.argmax()
    return torch.where(keep.any(), keep, top1)


def loss(batch: dict, model: torch.nn.Module, ref_model: torch.nn.Module | None, hp: Hparams):
    forget = batch["forget"]
    logp, mask = token_logprobs(forward(model, forget), forget["labels"])  # (B, T-1), shifted
    mean_prob = (logp.detach().exp() * mask).sum(-1) / mask.sum(-1).clamp(min=1)  # (B,)
    keep = selected(mean_prob, hp.threshold)
    nll = -logp.sum(-1)  # (B,) NLL_sum per sequence
    # the mean over the kept rows as a masked sum: nll[keep] has a data-dependent shape, which
    # waits for the GPU
    kept_nll = torch.where(keep, nll, 0.0).sum() / keep.sum()
    total = -kept_nll
    return total, {
        "forget_nll_sum": kept_nll.detach(),
        "selected_frac": keep.float().mean().detach(),
        "forget_mean_prob": mean_prob.mean().detach(),
    }
