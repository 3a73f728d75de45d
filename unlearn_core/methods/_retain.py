"""The retain term shared by GradDiff-style methods: NLL on retain answers, or KL to the reference
restricted to answer tokens (open-unlearning's KL averages over prompt and padding positions
too)."""

from __future__ import annotations

import torch

from unlearn_core.logprobs import answer_kl, forward, mean_nll, reference_logits

RETAIN_LOSSES = ("nll", "kl", "none")


def check_retain_loss(kind: str) -> None:
    if kind not in RETAIN_LOSSES:
        raise ValueError(f"retain_loss must be one of {', '.join(RETAIN_LOSSES)}, got {kind!r}")


def retain_term(
    batch: dict, model: torch.nn.Module, ref_model: torch.nn.Module | None, kind: str
) -> torch.Tensor:
    """The retain loss on batch['retain']; zero (no forward pass) when kind is 'none'."""
    if kind == "none":
        return torch.zeros((), device=batch["forget"]["input_ids"].device)
    retain = batch["retain"]
    logits = forward(model, retain)
    if kind == "nll":
        return mean_nll(logits, retain["labels"])
    assert ref_model is not None, "a KL retain loss needs the reference model"
    return answer_kl(logits, reference_logits(ref_model, retain), retain["labels"])
