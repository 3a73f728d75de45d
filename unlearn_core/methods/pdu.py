"""Primal-dual unlearning (PDU): flatten forget logit margins under a retain-loss constraint.

Entesari et al. 2025, "Constrained Entropic Unlearning: A Primal-Dual Framework for Large Language
Models" (arXiv 2506.05314), as in open-unlearning's PDU trainer:
  L_forget = mean over answer tokens of (max_v z_v - mean_v z_v)^2, z = logits predicting the token;
  L = gamma * L_forget + lambda * (R - eps), R = retain NLL (mean over answer tokens);
  lambda <- max(0, lambda + eta * (R - eps)) after every micro-batch (open-unlearning updates it in
  compute_loss, which the HF Trainer calls per micro-batch: at accumulation 4, four updates per
  optimizer step), once `dual_warmup_steps` optimizer steps have passed.
Fixes open-unlearning's off-by-one: its mask uses unshifted labels against next-token logits.
Defaults: open-unlearning's TOFU run.sh (initial lambda 100, eta 5, eps 0.3, 5 warmup epochs of 10).
Warmup is counted in optimizer steps (the loss sees steps, not epochs): 65 = 5 epochs of TOFU
forget10 (400 rows) at effective batch 32; scale it with the split (forget01: 10, forget05: 35).

lambda is state, kept explicit: a `DualVariable` module holding it as a buffer (no parameters, so
never in the optimizer nor in the saved weights; the loop's checkpoints hold it) that `prepare`
attaches as `model.pdu_dual`. Each micro-batch's loss uses lambda as it is, then the ascent applies
that micro-batch's R (open-unlearning's order). Under DDP, DDP's buffer broadcast keeps rank 0's
lambda.
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
    """lambda, a buffer."""

    def __init__(self, lam: float, device: torch.device) -> None:
        super().__init__()
        self.register_buffer("lam", torch.tensor(float(lam), device=device), persistent=False)

    @torch.no_grad()
    def observe(self, step: int, retain: torch.Tensor, hp: Hparams) -> torch.Tensor:
        """lambda for this micro-batch (a scalar copy); then, past the warm-up, the ascent with
        this micro-batch's retain NLL R."""
        lam = self.lam.clone()
        if step >= hp.dual_warmup_steps:
            violation = retain.detach().float() - hp.retain_loss_eps
            self.lam.copy_((self.lam + hp.dual_step_size * violation).clamp(min=0))
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
        "forget_margin": forget_loss.detach(),
        "retain_nll": retain.detach(),
        "dual_lambda": lam.detach(),
    }
