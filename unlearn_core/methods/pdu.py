"""Primal-dual unlearning (PDU): flatten forget logit margins under a retain-loss constraint.

Entesari et al. 2025, "Constrained Entropic Unlearning: A Primal-Dual Framework for Large Language
Models" (arXiv 2506.05314), as in open-unlearning's PDU trainer:
  L_forget = mean over answer tokens of (max_v z_v - mean_v z_v)^2, z = logits predicting the token;
  L = gamma * L_forget + lambda * (R - eps), R = retain NLL (mean over answer tokens);
  lambda <- max(0, lambda + eta * (R - eps)) once `dual_warmup_steps` optimizer steps have passed.
Fixes open-unlearning's off-by-one: its mask uses unshifted labels against next-token logits.
Defaults: open-unlearning's TOFU run.sh (initial lambda 100, eta 5, eps 0.3, 5 warmup epochs of 10).
Warmup is counted in optimizer steps (the loss sees steps, not epochs): 65 = 5 epochs of TOFU
forget10 (400 rows) at effective batch 32; scale it with the split (forget01: 10, forget05: 35).

lambda is state, kept explicit: a `DualVariable` module of buffers (no parameters, so never in the
optimizer nor in the saved weights) that `prepare` attaches as `model.pdu_dual`. The loss reads
lambda, and records R; on the first micro-batch of the next optimizer step it applies the ascent
with the mean R of the previous step (one update per optimizer step, whatever the accumulation; the
same one-step lag as the paper's update after each step). Under DDP, DDP's buffer broadcast keeps
rank 0's lambda.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearn_core.logprobs import forward, shift
from unlearn_core.methods._layers import unwrap
from unlearn_core.methods._retain import retain_term


@dataclass(frozen=True)
class Hparams:
    gamma: float = 1.0  # forget weight
    alpha: float = 100.0  # initial lambda (run.sh TOFU)
    dual_step_size: float = 5.0  # eta (run.sh TOFU); 0 keeps lambda = alpha
    retain_loss_eps: float = 0.3  # eps, the retain NLL budget (run.sh TOFU)
    dual_warmup_steps: int = 65  # no dual update before this optimizer step (see docstring)

    def __post_init__(self) -> None:
        if min(self.gamma, self.alpha, self.dual_step_size, self.dual_warmup_steps) < 0:
            raise ValueError("gamma, alpha, dual_step_size and dual_warmup_steps must be >= 0")


class DualVariable(torch.nn.Module):
    """lambda, and the sum and count of R over the pending optimizer step (all buffers)."""

    def __init__(self, lam: float, device: torch.device) -> None:
        super().__init__()
        for name, value in (("lam", float(lam)), ("r_sum", 0.0), ("r_count", 0), ("step", -1)):
            self.register_buffer(name, torch.tensor(value, device=device), persistent=False)

    @torch.no_grad()
    def observe(self, step: int, retain: torch.Tensor, hp: Hparams) -> torch.Tensor:
        """lambda for this step (after the previous step's ascent); records R. A scalar copy."""
        if step != self.step.item():
            if self.r_count > 0 and self.step.item() >= hp.dual_warmup_steps:
                violation = self.r_sum / self.r_count - hp.retain_loss_eps
                self.lam.copy_((self.lam + hp.dual_step_size * violation).clamp(min=0))
            self.r_sum.zero_()
            self.r_count.zero_()
            self.step.fill_(step)
        lam = self.lam.clone()
        self.r_sum += retain.detach().float()
        self.r_count += 1
        return lam


def needs_reference(hp: Hparams) -> bool:
    return False


def prepare(model: torch.nn.Module, hp: Hparams) -> torch.nn.Module:
    model.pdu_dual = DualVariable(hp.alpha, next(model.parameters()).device)
    return model


def margin_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """mean over answer positions of (max_v z - mean_v z)^2, z the logits that predict them."""
    z, _, mask = shift(logits, labels)  # (B, T-1, V), mask (B, T-1)
    z = z.float()
    margin = z.max(-1).values - z.mean(-1)  # (B, T-1)
    return (margin.square() * mask).sum() / mask.sum().clamp(min=1)


def loss(batch: dict, model: torch.nn.Module, ref_model: torch.nn.Module | None, hp: Hparams):
    forget = batch["forget"]
    forget_loss = margin_loss(forward(model, forget), forget["labels"])
    retain = retain_term(batch, model, None, "nll")
    dual = unwrap(model).pdu_dual
    lam = dual.observe(batch["step"], retain, hp)
    total = hp.gamma * forget_loss + lam * (retain - hp.retain_loss_eps)
    return total, {
        "forget_margin": forget_loss.item(),
        "retain_nll": retain.item(),
        "dual_lambda": lam.item(),
    }
