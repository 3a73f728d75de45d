"""DualOptim: alternate forget and retain steps, each with its own Adam moments and learning rate.

Zhong et al. 2025, "DualOptim: Enhancing Efficacy and Stability in Machine Unlearning with Dual
Optimizers" (arXiv 2504.15827; CityU-MLO/DualOptim, LLM/). Optimizer step s is a forget step when
s mod (forget_freq + retain_freq) < forget_freq, else a retain step. A forget step minimises
gamma * L_forget of the base method, a retain step alpha * L_retain; each phase updates its own Adam
moments and bias-correction counter, and forget steps use lr * forget_lr_ratio.
The base method is a field (me_gd, idk_ap, idk_dpo; grad_diff, npo); its hyperparameters are the
flat fields gamma (forget_coeff), alpha (regularization_coeff) and beta (temperature of NPO/DPO/AP),
so a sweep sees one flat space. The target NLL moves as for ME+GD (forget up); with idk_ap and
idk_dpo the forget_idk NLL goes down instead.
Defaults: LLM/scripts/tofu/dualoptim.sh (1:5, forget_lr = retain_lr = 1e-5, coefficients 1,
beta 0.1).
Epochs here count passes over the forget set with a retain partner per row, and only forget steps
read the forget rows: one epoch makes forget_freq/(forget_freq + retain_freq) of a pass of forget
steps. DualOptim instead appends retain steps to each epoch; multiply epochs by
(forget_freq + retain_freq) / forget_freq to match its forget passes and step counts.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch

from unlearn_core.logprobs import (
    dpo_loss,
    forward,
    mean_nll,
    npo_loss,
    reference_logits,
    sequence_logratio,
    sequence_nll,
)
from unlearn_core.methods._dual_adam import PhasedAdamW
from unlearn_core.methods.idk_ap import answer_preservation
from unlearn_core.methods.me_gd import uniform_kl

Part = Callable[[dict, torch.nn.Module, "torch.nn.Module | None", "Hparams"], torch.Tensor]


def _forget_ascent(batch, model, ref_model, hp) -> torch.Tensor:
    forget = batch["forget"]
    return -mean_nll(forward(model, forget), forget["labels"])


def _forget_npo(batch, model, ref_model, hp) -> torch.Tensor:
    forget = batch["forget"]
    logp = -sequence_nll(forward(model, forget), forget["labels"])
    logp_ref = -sequence_nll(reference_logits(ref_model, forget), forget["labels"])
    return npo_loss(logp, logp_ref, hp.beta)


def _forget_entropy(batch, model, ref_model, hp) -> torch.Tensor:
    forget = batch["forget"]
    return uniform_kl(forward(model, forget), forget["labels"])


def _forget_idk(batch, model, ref_model, hp) -> torch.Tensor:
    idk = batch["forget_idk"]
    return mean_nll(forward(model, idk), idk["labels"])


def _forget_idk_dpo(batch, model, ref_model, hp) -> torch.Tensor:
    win = sequence_logratio(model, ref_model, batch["forget_idk"])
    lose = sequence_logratio(model, ref_model, batch["forget"])
    return dpo_loss(win, lose, hp.beta)


def _retain_nll(batch, model, ref_model, hp) -> torch.Tensor:
    retain = batch["retain"]
    return mean_nll(forward(model, retain), retain["labels"])


def _retain_ap(batch, model, ref_model, hp) -> torch.Tensor:
    retain, retain_idk = batch["retain"], batch["retain_idk"]
    nll_answer = sequence_nll(forward(model, retain), retain["labels"])
    nll_idk = sequence_nll(forward(model, retain_idk), retain_idk["labels"])
    return answer_preservation(nll_idk, nll_answer, hp.beta)


# base method -> (forget part, retain part, needs the reference model); each part calls the maths
# of the base method's module (me_gd, idk_ap, idk_dpo, grad_diff, npo)
BASES: dict[str, tuple[Part, Part, bool]] = {
    "me_gd": (_forget_entropy, _retain_nll, False),
    "idk_ap": (_forget_idk, _retain_ap, False),
    "idk_dpo": (_forget_idk_dpo, _retain_nll, True),
    "grad_diff": (_forget_ascent, _retain_nll, False),
    "npo": (_forget_npo, _retain_nll, True),
}
# every view any base reads (the registry entry builds them all)
VIEWS = ("forget", "forget_idk", "retain", "retain_idk")


@dataclass(frozen=True)
class Hparams:
    base: str = "me_gd"  # the base whose forget and retain parts alternate (dualoptim.sh: ME+GD)
    forget_freq: int = 1  # forget steps per cycle (dualoptim.sh)
    retain_freq: int = 5  # retain steps per cycle (dualoptim.sh)
    forget_lr_ratio: float = 1.0  # forget_lr / retain_lr (1e-5 / 1e-5 in dualoptim.sh)
    gamma: float = 1.0  # forget_coeff (dualoptim.sh)
    alpha: float = 1.0  # regularization_coeff (dualoptim.sh)
    beta: float = 0.1  # NPO/DPO/AP temperature (closer-look and DualOptim configs)

    def __post_init__(self) -> None:
        if self.base not in BASES:
            raise ValueError(f"base must be one of {', '.join(BASES)}, got {self.base!r}")
        if self.forget_freq < 1 or self.retain_freq < 0:
            raise ValueError("forget_freq must be >= 1 and retain_freq >= 0")
        if self.forget_lr_ratio <= 0 or self.beta <= 0:
            raise ValueError("forget_lr_ratio and beta must be > 0")


FORGET, RETAIN = 0, 1


def phase(forget_freq: int, retain_freq: int, step: int) -> int:
    """FORGET or RETAIN for optimizer step `step` (0-based)."""
    return FORGET if step % (forget_freq + retain_freq) < forget_freq else RETAIN


def needs_reference(hp: Hparams) -> bool:
    return BASES[hp.base][2]


def optimizer(params, cfg, hp: Hparams) -> torch.optim.Optimizer:
    return PhasedAdamW(
        params,
        cfg.lr,
        cfg.weight_decay,
        functools.partial(phase, hp.forget_freq, hp.retain_freq),
        (hp.forget_lr_ratio, 1.0),
    )


def loss(batch: dict, model: torch.nn.Module, ref_model: torch.nn.Module | None, hp: Hparams):
    forget_part, retain_part, _ = BASES[hp.base]
    if phase(hp.forget_freq, hp.retain_freq, batch["step"]) == FORGET:
        part = forget_part(batch, model, ref_model, hp)
        return hp.gamma * part, {"forget_loss": part.detach(), "phase": float(FORGET)}
    part = retain_part(batch, model, ref_model, hp)
    return hp.alpha * part, {"retain_loss": part.detach(), "phase": float(RETAIN)}
