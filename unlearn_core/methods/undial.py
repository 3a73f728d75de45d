"""UNDIAL: self-distil toward the reference logits with the true token's logit lowered by beta.

Dong et al. 2024, "UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in Large
Language Models" (https://arxiv.org/abs/2402.10052): per answer position t with target y_t,
q_t = softmax(z_ref,t - beta * onehot(y_t)); L_forget = mean_t CE(q_t, softmax(z_theta,t));
L = gamma * L_forget + alpha * R(retain). Defaults beta 10, alpha 0, gamma 1, retain NLL from
open-unlearning's UNDIAL.yaml. Unlike open-unlearning, the term is masked to answer tokens (theirs
averages over prompt and padding, where label -100 indexes vocab id V-100), and no retain forward
pass runs when alpha is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearn_core.logprobs import forward, masked_mean, reference_logits, shift, soft_cross_entropy
from unlearn_core.methods._retain import check_retain_loss, retain_term


@dataclass(frozen=True)
class Hparams:
    beta: float = 10.0  # how far the true token's teacher logit is lowered
    gamma: float = 1.0  # forget weight
    alpha: float = 0.0  # retain weight (0: no retain term, as in UNDIAL.yaml)
    retain_loss: str = "nll"  # nll | kl | none

    def __post_init__(self) -> None:
        check_retain_loss(self.retain_loss)
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")


def needs_reference(hp: Hparams) -> bool:
    return True


def adjusted_teacher(ref_logits: torch.Tensor, targets: torch.Tensor, beta: float) -> torch.Tensor:
    """z_ref - beta * onehot(target), float32: (B, T, V) from (B, T, V) and (B, T)."""
    z = ref_logits.float()
    lowered = z.gather(-1, targets.unsqueeze(-1)) - beta
    return z.scatter(-1, targets.unsqueeze(-1), lowered)


def loss(batch: dict, model: torch.nn.Module, ref_model: torch.nn.Module, hp: Hparams):
    forget = batch["forget"]
    logits, targets, mask = shift(forward(model, forget), forget["labels"])  # (B, T-1, V)
    ref_logits, _, _ = shift(reference_logits(ref_model, forget), forget["labels"])
    ce = soft_cross_entropy(logits, adjusted_teacher(ref_logits, targets, hp.beta))  # (B, T-1)
    forget_loss = masked_mean(ce, mask)
    retain = retain_term(batch, model, ref_model, hp.retain_loss if hp.alpha else "none")
    total = hp.gamma * forget_loss + hp.alpha * retain
    return total, {"forget_undial": forget_loss.detach(), "retain_loss": retain.detach()}
