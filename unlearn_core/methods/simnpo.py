"""SimNPO: reference-free NPO on the length-normalised forget NLL with a margin delta.

Fan et al. 2024, "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM
Unlearning" (arXiv 2410.07163), eq. 4: L_forget = -(2/beta) E log sigmoid(-(beta/|y|) log pi(y|x)
- gamma_margin). As in open-unlearning's SimNPO the margin enters as beta * delta:
L_forget = -(2/beta) E log sigmoid(beta * (NLL(y|x)/|y| - delta)); L = gamma * L_forget + alpha * R.
Defaults from open-unlearning's SimNPO.yaml (itself OPTML-Group/Unlearn-Simple's TOFU config).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearn_core.logprobs import answer_lengths, forward, npo_loss, sequence_nll
from unlearn_core.methods._retain import check_retain_loss, retain_term


@dataclass(frozen=True)
class Hparams:
    beta: float = 4.5  # inverse temperature
    gamma: float = 0.125  # forget weight (the paper's npo_coeff)
    delta: float = 0.0  # margin on the per-token NLL (the paper's gamma, scaled by beta)
    alpha: float = 1.0  # retain weight
    retain_loss: str = "nll"  # nll | kl | none

    def __post_init__(self) -> None:
        check_retain_loss(self.retain_loss)
        if self.beta <= 0:
            raise ValueError(f"beta must be > 0, got {self.beta}")


def needs_reference(hp: Hparams) -> bool:
    return hp.retain_loss == "kl"


def loss(batch: dict, model: torch.nn.Module, ref_model: torch.nn.Module | None, hp: Hparams):
    forget = batch["forget"]
    labels = forget["labels"]
    lengths = answer_lengths(labels).clamp(min=1)  # (B,)
    per_token_nll = sequence_nll(forward(model, forget), labels) / lengths
    # npo_loss(x, c) = -(2/b) E log sigmoid(-b (x - c)); with x = -NLL/|y|, c = -delta this is
    # -(2/b) E log sigmoid(b (NLL/|y| - delta)), SimNPO's forget term
    forget_loss = npo_loss(-per_token_nll, torch.full_like(per_token_nll, -hp.delta), hp.beta)
    retain = retain_term(batch, model, ref_model, hp.retain_loss)
    total = hp.gamma * forget_loss + hp.alpha * retain
    logs = {
        "forget_simnpo": forget_loss.detach(),
        "retain_loss": retain.detach(),
        "forget_nll": per_token_nll.mean().detach(),
    }
    return total, logs
