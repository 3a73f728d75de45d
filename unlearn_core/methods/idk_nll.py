"""IDK+GD (IdkNLL): fine-tune the forget questions toward a refusal, keep the retain answers.

Refusal targets from Maini et al. 2024, "TOFU" (arXiv 2401.06121, the "I don't know" answers);
IDK+GD as run in Yuan et al. 2025, "A Closer Look at Machine Unlearning for LLMs"
(https://arxiv.org/abs/2410.08109), IdkNLL in the OpenUnlearning paper:
L = gamma * NLL_mean(forget q, refusal) + alpha * NLL_mean(retain q', a').
Defaults gamma = alpha = 1 as in closer-look's scripts/tofu/baselines.sh (forget_coeff,
regularization_coeff). Success lowers the refusal's NLL (moves = forget_idk, -1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearn_core.logprobs import forward, mean_nll


@dataclass(frozen=True)
class Hparams:
    gamma: float = 1.0  # refusal (forget) weight
    alpha: float = 1.0  # retain NLL weight


def needs_reference(hp: Hparams) -> bool:
    return False


def loss(batch: dict, model: torch.nn.Module, ref_model: torch.nn.Module | None, hp: Hparams):
    idk, retain = batch["forget_idk"], batch["retain"]
    idk_nll = mean_nll(forward(model, idk), idk["labels"])
    retain_nll = mean_nll(forward(model, retain), retain["labels"])
    total = hp.gamma * idk_nll + hp.alpha * retain_nll
    return total, {"forget_idk_nll": idk_nll.detach(), "retain_loss": retain_nll.detach()}
