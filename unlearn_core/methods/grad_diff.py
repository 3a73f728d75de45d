"""Gradient difference (GradDiff, GA+GD; GA+KL with retain_loss='kl'):
L = gamma * (-NLL(forget)) + alpha * R(retain), R = NLL or KL(p_ref || p_theta) on answer tokens.

Liu et al. 2022 ("Continual learning and private unlearning"); defaults gamma = alpha = 1 and
retain NLL as in open-unlearning's GradDiff.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearn_core.logprobs import forward, mean_nll
from unlearn_core.methods._retain import check_retain_loss, retain_term


@dataclass(frozen=True)
class Hparams:
    gamma: float = 1.0  # forget weight
    alpha: float = 1.0  # retain weight
    retain_loss: str = "nll"  # nll | kl

    def __post_init__(self) -> None:
        check_retain_loss(self.retain_loss)


def needs_reference(hp: Hparams) -> bool:
    return hp.retain_loss == "kl"


def loss(batch: dict, model: torch.nn.Module, ref_model: torch.nn.Module | None, hp: Hparams):
    forget = batch["forget"]
    forget_nll = mean_nll(forward(model, forget), forget["labels"])
    retain = retain_term(batch, model, ref_model, hp.retain_loss)
    total = -hp.gamma * forget_nll + hp.alpha * retain
    return total, {"forget_nll": forget_nll.detach(), "retain_loss": retain.detach()}
