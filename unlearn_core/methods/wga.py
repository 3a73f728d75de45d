"""WGA: weighted gradient ascent, each forget token's NLL weighted by its detached probability^beta.

Wang et al. 2025, "Rethinking LLM Unlearning Objectives: A Gradient Perspective and Go Beyond"
(ICLR 2025, https://arxiv.org/abs/2502.19301): w_t = sg(p_t^beta);
L_forget = -mean_t(w_t * NLL_t) over answer tokens; L = gamma * L_forget + alpha * R(retain).
Defaults beta 1, gamma 1, alpha 1, retain NLL from open-unlearning's WGA.yaml. No reference model
unless retain_loss is kl (open-unlearning builds an unused one).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearn_core.logprobs import forward, weighted_ascent
from unlearn_core.methods._retain import check_retain_loss, retain_term


@dataclass(frozen=True)
class Hparams:
    beta: float = 1.0  # weight exponent
    gamma: float = 1.0  # forget weight
    alpha: float = 1.0  # retain weight
    retain_loss: str = "nll"  # nll | kl | none

    def __post_init__(self) -> None:
        check_retain_loss(self.retain_loss)


def needs_reference(hp: Hparams) -> bool:
    return hp.retain_loss == "kl"


def loss(batch: dict, model: torch.nn.Module, ref_model: torch.nn.Module | None, hp: Hparams):
    forget = batch["forget"]
    logits = forward(model, forget)
    forget_loss = weighted_ascent(logits, forget["labels"], lambda p: p**hp.beta)
    retain = retain_term(batch, model, ref_model, hp.retain_loss)
    total = hp.gamma * forget_loss + hp.alpha * retain
    return total, {"forget_wga": forget_loss.detach(), "retain_loss": retain.detach()}
