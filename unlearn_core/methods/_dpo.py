"""The DPO forget term shared by IdkDPO and AltPO: a preferred answer view (refusal or alternate)
over the true forget answer, relative to the reference model, plus a GradDiff-style retain term."""

from __future__ import annotations

import torch

from unlearn_core.logprobs import dpo_loss, sequence_logratio
from unlearn_core.methods._retain import retain_term


def preference_loss(
    batch: dict, model: torch.nn.Module, ref_model: torch.nn.Module, hp, win: str
) -> tuple[torch.Tensor, dict[str, float]]:
    """gamma * DPO(win = batch[win], lose = batch['forget']; beta) + alpha * R(retain).
    hp needs beta, gamma, alpha and retain_loss."""
    r_win = sequence_logratio(model, ref_model, batch[win])  # (B,)
    r_lose = sequence_logratio(model, ref_model, batch["forget"])  # (B,)
    forget_loss = dpo_loss(r_win, r_lose, hp.beta)
    retain = retain_term(batch, model, ref_model, hp.retain_loss)
    total = hp.gamma * forget_loss + hp.alpha * retain
    logs = {
        "forget_dpo": forget_loss.detach(),
        "retain_loss": retain.detach(),
        "win_logratio": r_win.mean().detach(),
        "lose_logratio": r_lose.mean().detach(),
    }
    return total, logs
