"""PALU: flatten the reference model's top-k logits at the first tokens of each sensitive span.

Zhai et al., "Maximizing Local Entropy Where It Matters: Prefix-Aware Localized LLM Unlearning"
(ACL 2026; code github.com/nxZhai/PALU). S = sensitive answer positions (view forget_sensitive),
keeping the first `first_n` of each contiguous run (-1: all); K_t = top-k reference logits at t:
L_forget = mean_{t in S} (1/k) sum_{j in K_t} (z_t[j] - mean_v z_t[v])^2;
L = gamma * L_forget + alpha * (NLL(retain) + mean_{t non-sensitive} KL(p_theta || p_ref)).
Defaults top_k 1, first_n -1, gamma 1, alpha 1 (PALU configs/trainer/PALU.yaml).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearn_core.logprobs import forward, masked_mean, mean_nll, reference_logits, shift


@dataclass(frozen=True)
class Hparams:
    top_k: int = 1  # reference logits pushed to the mean at each sensitive position
    first_n: int = -1  # sensitive tokens kept per span (its prefix); -1 keeps every one
    gamma: float = 1.0  # forget weight
    alpha: float = 1.0  # weight of retain NLL and of the non-sensitive KL together

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.first_n == 0 or self.first_n < -1:
            raise ValueError(f"first_n must be -1 (all) or >= 1, got {self.first_n}")


def needs_reference(hp: Hparams) -> bool:
    return True


def span_prefix(mask: torch.Tensor, n: int) -> torch.Tensor:
    """Keep the first n positions of each contiguous run of True along the last dim (n=-1: all)."""
    if n < 0:
        return mask
    count = mask.long().cumsum(-1)  # (B, T)
    prev = torch.nn.functional.pad(mask[..., :-1], (1, 0), value=False)
    at_start = torch.where(mask & ~prev, count, torch.zeros_like(count))
    run_start = torch.cummax(at_start, dim=-1).values  # count at the current run's first token
    return mask & (count - run_start < n)


def flatten_topk(logits: torch.Tensor, ref_logits: torch.Tensor, k: int) -> torch.Tensor:
    """(1/k) sum over the reference top-k ids of (z[j] - mean_v z[v])^2 per position: (B, T)."""
    z = logits.float()
    top = ref_logits.topk(k, dim=-1).indices  # (B, T, k)
    return (z.gather(-1, top) - z.mean(-1, keepdim=True)).pow(2).mean(-1)


def reverse_kl(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """KL(p_theta || p_ref) per position: (B, T)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    ref_logp = torch.log_softmax(ref_logits.float(), dim=-1)
    return (logp.exp() * (logp - ref_logp)).sum(-1)


def loss(batch: dict, model: torch.nn.Module, ref_model: torch.nn.Module, hp: Hparams):
    sens, forget, retain = batch["forget_sensitive"], batch["forget"], batch["retain"]
    assert torch.equal(sens["input_ids"], forget["input_ids"]), "views must share input_ids"
    logits, _, sensitive = shift(forward(model, sens), sens["labels"])  # (B, T-1, V)
    ref_logits, _, answer = shift(reference_logits(ref_model, sens), forget["labels"])
    forget_loss = masked_mean(
        flatten_topk(logits, ref_logits, hp.top_k), span_prefix(sensitive, hp.first_n)
    )
    non_sensitive = masked_mean(reverse_kl(logits, ref_logits), answer & ~sensitive)
    retain_nll = mean_nll(forward(model, retain), retain["labels"])
    total = hp.gamma * forget_loss + hp.alpha * (retain_nll + non_sensitive)
    logs = {
        "forget_flatten": forget_loss.detach(),
        "forget_nonsensitive_kl": non_sensitive.detach(),
        "retain_loss": retain_nll.detach(),
    }
    return total, logs
