"""ME+GD: maximise the predictive entropy on forget answer tokens, keep the retain answers.

Yuan et al. 2025, "A Closer Look at Machine Unlearning for LLMs" (arXiv 2410.08109, ICLR 2025),
sec. 4.1: per answer position t, KL(U || p_theta(.|prefix)) = -log V - (1/V) sum_v log p_v (U the
uniform distribution over the V-token vocabulary), averaged over tokens;
L = gamma * ME(forget) + alpha * NLL(retain), alpha 1 (closer-look config/tofu.yaml).

Closer-look runs ME+GD with mask=false and gamma (forget_coeff) 0.1 (scripts/tofu/me_gd.sh): its
mean runs over every position of the sequence padded to 500 tokens, question and padding
included. Here the term covers answer tokens only, like every other forget loss, so each answer
token weighs 500 / n_answer times more here than there. A TOFU answer has about 30-60 Llama
tokens, so closer-look's 0.1 is gamma ~ 0.006-0.012 here: the default is 0.01, and the search
range reaches 0.001.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from unlearn_core.logprobs import forward, masked_mean, mean_nll, shift


@dataclass(frozen=True)
class Hparams:
    gamma: float = 0.01  # entropy weight: closer-look's 0.1 over 500 padded positions (above)
    alpha: float = 1.0  # retain NLL weight (regularization_coeff)


def needs_reference(hp: Hparams) -> bool:
    return False


def uniform_kl(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(U || p_theta) averaged over answer tokens, a scalar."""
    logits, _, mask = shift(logits, labels)
    logp = torch.log_softmax(logits.float(), dim=-1)  # (B, T-1, V)
    kl = -math.log(logp.shape[-1]) - logp.mean(-1)  # (B, T-1)
    return masked_mean(kl, mask)


def loss(batch: dict, model: torch.nn.Module, ref_model: torch.nn.Module | None, hp: Hparams):
    forget, retain = batch["forget"], batch["retain"]
    me = uniform_kl(forward(model, forget), forget["labels"])
    retain_nll = mean_nll(forward(model, retain), retain["labels"])
    total = hp.gamma * me + hp.alpha * retain_nll
    return total, {"forget_uniform_kl": me.detach(), "retain_loss": retain_nll.detach()}
