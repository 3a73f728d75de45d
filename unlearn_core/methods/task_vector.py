"""Task-vector negation (TV): fine-tune on the forget set, then subtract the learned task vector.

Ilharco et al. 2023, "Editing Models with Task Arithmetic" (arXiv 2212.04089), section 3 (negation),
as DUSK's forget.py + forget_tv.py run it: the loss is +NLL(forget) (the "reinforced" model), then
`finalize` sets theta = theta_ref - scale * (theta_ft - theta_ref), theta_ref the original model.
Default scale 1.0 (DUSK's alpha).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from unlearn_core.logprobs import forward, mean_nll


@dataclass(frozen=True)
class Hparams:
    scale: float = 1.0  # how much of the task vector is subtracted (DUSK forget_tv.py alpha)

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ValueError(f"scale must be > 0, got {self.scale}")


def needs_reference(hp: Hparams) -> bool:
    return True


def loss(batch: dict, model: torch.nn.Module, ref_model: torch.nn.Module, hp: Hparams):
    forget = batch["forget"]
    nll = mean_nll(forward(model, forget), forget["labels"])
    return nll, {"forget_nll": nll.detach()}


# Negating LoRA's A and B one by one does not negate their product B.A (refused, as TAU)
NO_LORA = "negates the fine-tuning delta weight by weight, which does not negate LoRA's update B.A"


@torch.no_grad()
def negate(
    model: torch.nn.Module,
    base: Mapping[str, torch.Tensor],
    scale: float,
    where: torch.Tensor | None = None,
) -> None:
    """In place: theta <- base - scale * (theta - base) for every parameter (by name); only if the
    boolean 0-d `where` is true, when given (chosen on the device: reading it would sync)."""
    params = dict(model.named_parameters())
    assert params.keys() == base.keys(), "the task vector's base has other parameters"
    for name, p in params.items():
        b = base[name].float()
        negated = b - scale * (p.float() - b)
        p.copy_(negated if where is None else torch.where(where, negated, p.float()))


def finalize(model: torch.nn.Module, ref_model: torch.nn.Module, hp: Hparams) -> None:
    negate(model, dict(ref_model.named_parameters()), hp.scale)
