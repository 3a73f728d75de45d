"""Negative Preference Optimization (NPO; NPO+GD and NPO+KL through `retain_loss`).

Zhang et al. 2024, "Negative Preference Optimization" (arXiv 2404.05868), eq. 3:
L_forget = -(2/beta) E log sigmoid(-beta * (log pi_theta(y|x) - log pi_ref(y|x))) on sequence sums;
L = gamma * L_forget + alpha * R(retain). Defaults as open-unlearning's NPO.yaml (beta 0.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearn_core.logprobs import forward, npo_loss, reference_logits, sequence_nll
from unlearn_core.methods._retain import check_retain_loss, retain_term


@dataclass(frozen=True)
class Hparams:
    beta: float = 0.1  # inverse temperature
    gamma: float = 1.0  # forget weight
    alpha: float = 1.0  # retain weight
    retain_loss: str = "nll"  # nll (NPO+GD) | kl (NPO+KL) | none (plain NPO)

    def __post_init__(self) -> None:
        check_retain_loss(self.retain_loss)
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")


def needs_reference(hp: Hparams) -> bool:
    return True


def loss(batch: dict, model: torch.nn.Module, ref_model: torch.nn.Module, hp: Hparams):
    forget = batch["forget"]
    logp = -sequence_nll(forward(model, forget), forget["labels"])
    logp_ref = -sequence_nll(reference_logits(ref_model, forget), forget["labels"])
    forget_loss = npo_loss(logp, logp_ref, hp.beta)
    retain = retain_term(batch, model, ref_model, hp.retain_loss)
    total = hp.gamma * forget_loss + hp.alpha * retain
    logs = {
        "forget_npo": forget_loss.detach(),
        "retain_loss": retain.detach(),
        "forget_logratio": (logp - logp_ref).mean().detach(),
    }
    return total, logs
