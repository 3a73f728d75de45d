"""IdkDPO: DPO that prefers a refusal over the true forget answer, relative to the reference model.

Rafailov et al. 2023 (DPO, arXiv 2305.18290) as used for unlearning in Maini et al. 2024 (TOFU) and
Zhang et al. 2024 (NPO): with r(y) = log pi_theta(y|x) - log pi_ref(y|x) on answer-token sums,
L = -gamma (2/beta) E log sigmoid(beta (r(idk) - r(answer))) + alpha * R(retain).
Defaults beta 0.1, gamma = alpha = 1, retain NLL: open-unlearning's DPO.yaml with tofu/idk.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearn_core.methods._dpo import preference_loss
from unlearn_core.methods._retain import check_retain_loss


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
    return preference_loss(batch, model, ref_model, hp, win="forget_idk")
