"""CE-U: cross-entropy toward the model's own detached distribution with the true token removed.

Yang 2025, "CE-U: Cross Entropy Unlearning" (https://arxiv.org/abs/2503.01224): per answer
position t, q_t = softmax(sg(z_t) with z_t[y_t] = -inf); L = mean_t CE(q_t, softmax(z_t)), over
answer tokens after the first `ignore_first_n_answer_tokens` of each answer. No retain term.
Defaults from open-unlearning's CEU.yaml (ignore_first_n_answer_tokens 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearn_core.logprobs import forward, masked_mean, shift, soft_cross_entropy


@dataclass(frozen=True)
class Hparams:
    ignore_first_n_answer_tokens: int = 1  # the opening answer tokens are often template-like

    def __post_init__(self) -> None:
        if self.ignore_first_n_answer_tokens < 0:
            raise ValueError(
                "ignore_first_n_answer_tokens must be >= 0, "
                f"got {self.ignore_first_n_answer_tokens}"
            )


def needs_reference(hp: Hparams) -> bool:
    return False


def loss(batch: dict, model: torch.nn.Module, ref_model: torch.nn.Module | None, hp: Hparams):
    forget = batch["forget"]
    logits, targets, mask = shift(forward(model, forget), forget["labels"])  # (B, T-1, V)
    keep = mask & (mask.cumsum(-1) > hp.ignore_first_n_answer_tokens)  # (B, T-1)
    without_true = logits.detach().float().scatter(-1, targets.unsqueeze(-1), float("-inf"))
    forget_loss = masked_mean(soft_cross_entropy(logits, without_true), keep)
    return forget_loss, {"forget_ceu": forget_loss.detach()}
