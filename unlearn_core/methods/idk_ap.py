"""IDK+AP: refuse on forget questions; on retain questions keep the true answer above a refusal.

Yuan et al. 2025, "A Closer Look at Machine Unlearning for LLMs" (arXiv 2410.08109, ICLR 2025),
sec. 4.2, answer preservation (AP), reference-free, with NLL on answer-token sums:
L = gamma * NLL_mean(forget q, idk)
    + alpha * -(1/beta) E log sigmoid(beta * (NLL(q', idk) - NLL(q', a'))) on retain rows.
Defaults beta 0.1, gamma = alpha = 1 (closer-look config/tofu.yaml and scripts/tofu/idk_ap.sh).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unlearn_core.logprobs import forward, mean_nll, sequence_nll


@dataclass(frozen=True)
class Hparams:
    beta: float = 0.1  # AP inverse temperature
    gamma: float = 1.0  # refusal (forget) weight
    alpha: float = 1.0  # answer-preservation weight

    def __post_init__(self) -> None:
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")


def needs_reference(hp: Hparams) -> bool:
    return False


def answer_preservation(
    nll_idk: torch.Tensor, nll_answer: torch.Tensor, beta: float
) -> torch.Tensor:
    """-(1/beta) E log sigmoid(beta (NLL(idk) - NLL(answer))) on per-sequence NLL sums."""
    return -(1.0 / beta) * F.logsigmoid(beta * (nll_idk - nll_answer)).mean()


def loss(batch: dict, model: torch.nn.Module, ref_model: torch.nn.Module | None, hp: Hparams):
    idk, retain, retain_idk = batch["forget_idk"], batch["retain"], batch["retain_idk"]
    idk_nll = mean_nll(forward(model, idk), idk["labels"])
    nll_answer = sequence_nll(forward(model, retain), retain["labels"])  # (B,)
    nll_idk = sequence_nll(forward(model, retain_idk), retain_idk["labels"])  # (B,)
    ap = answer_preservation(nll_idk, nll_answer, hp.beta)
    total = hp.gamma * idk_nll + hp.alpha * ap
    logs = {
        "forget_idk_nll": idk_nll.detach(),
        "retain_ap": ap.detach(),
        "retain_nll_gap": (nll_idk - nll_answer).mean().detach(),
    }
    return total, logs
