"""SatImp: token-weighted gradient ascent with weights p^beta1 * (1 - p)^beta2 (detached).

Yang et al. 2025, "Exploring Criteria of Loss Reweighting to Enhance LLM Unlearning" (ICML 2025,
https://arxiv.org/abs/2505.11953): w_t = sg(p_t^beta1 (1 - p_t)^beta2);
L_forget = -mean_t(w_t * NLL_t) over answer tokens; L = gamma * L_forget + alpha * R(retain).
Defaults from open-unlearning's SatImp.yaml, which is what its runs use: beta1 5, beta2 1,
gamma 0.1, alpha 1. Its Python class and README say gamma 1, alpha 0.1 instead (inconsistent).
No reference model unless retain_loss is kl (open-unlearning builds an unused one).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearn_core.logprobs import forward, weighted_ascent
from unlearn_core.methods._retain import check_retain_loss, retain_term


@dataclass(frozen=True)
class Hparams:
    beta1: float = 5.0  # exponent on p (favours well-memorised tokens)
    beta2: float = 1.0  # exponent on 1 - p (damps already-saturated tokens)
    gamma: float = 0.1  # forget weight (SatImp.yaml)
    alpha: float = 1.0  # retain weight (SatImp.yaml)
    retain_loss: str = "nll"  # nll | kl | none

    def __post_init__(self) -> None:
        check_retain_loss(self.retain_loss)


def needs_reference(hp: Hparams) -> bool:
    return hp.retain_loss == "kl"


def loss(batch: dict, model: torch.nn.Module, ref_model: torch.nn.Module | None, hp: Hparams):
    forget = batch["forget"]

    def weight(p: torch.Tensor) -> torch.Tensor:
        return p**hp.beta1 * (1 - p) ** hp.beta2

    forget_loss = weighted_ascent(forward(model, forget), forget["labels"], weight)
    retain = retain_term(batch, model, ref_model, hp.retain_loss)
    total = hp.gamma * forget_loss + hp.alpha * retain
    return total, {"forget_satimp": forget_loss.detach(), "retain_loss": retain.detach()}
