"""Representation Misdirection for Unlearning (RMU): steer one layer's forget activations to c*u.

Li et al. 2024, "The WMDP Benchmark" (arXiv 2403.03218), section 5 / eq. 1-2, with h = output of
decoder layer `layer` on answer tokens (labels != -100, the tokens themselves: no shift):
  L_forget = mean_b [ sum_t mean_d (h_t - c*u)^2 / #t ],   u = v / ||v||, v ~ U[0,1)^d (fixed per
  run: a torch.Generator seeded with `seed`; DUSK redraws it every step, the paper does not);
  L_retain = same masked MSE between h on retain answers and the frozen reference's h;
  L = gamma * L_forget + alpha * L_retain. Only mlp.down_proj.weight of `trainable_layers` trains
  (the paper's and open-unlearning's class default; `prepare` freezes the rest).
Defaults fit the 2-layer built-in model (alpha 10: at 1200 the retain term freezes its 64-dim
activations and the forget activations barely move; chosen on tiny-tofu-small). Reference values
for 7-8B Llama/Zephyr (32 layers): layer 7, trainable_layers (5, 6, 7), steering_coeff 6.5 (paper,
Zephyr-7B; 20 in DUSK and open-unlearning's class; 2 in its RMU.yaml), alpha 1200 (paper; 1 in DUSK
and RMU.yaml). The paper and RMU.yaml say to tune c and alpha per model: activation norms differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearn_core.logprobs import IGNORE, forward
from unlearn_core.methods._layers import captured, check_layers, decoder_layers


@dataclass(frozen=True)
class Hparams:
    layer: int = 1  # decoder layer whose output is steered (7 in the paper's 32-layer models)
    trainable_layers: tuple[int, ...] = (0, 1)  # their down_proj trains ((5, 6, 7) in the paper)
    steering_coeff: float = 6.5  # c (paper, Zephyr-7B)
    alpha: float = 10.0  # retain weight (1200 in the paper; see docstring)
    gamma: float = 1.0  # forget weight (open-unlearning)
    seed: int = 0  # draws u

    def __post_init__(self) -> None:
        object.__setattr__(self, "trainable_layers", tuple(self.trainable_layers))
        if not self.trainable_layers:
            raise ValueError("trainable_layers must name at least one layer")
        if max(self.trainable_layers) > self.layer:
            raise ValueError(
                f"trainable_layers must be <= layer {self.layer}: later layers do "
                "not affect its output, so they would get no gradient"
            )
        if self.steering_coeff <= 0 or self.alpha < 0 or self.gamma < 0:
            raise ValueError("steering_coeff must be > 0; alpha and gamma >= 0")


# RMU trains chosen layers of the model itself; LoRA adapters would stay frozen (refused)
NO_LORA = "trains down_proj weights of chosen layers of the model, not LoRA adapters"


def needs_reference(hp: Hparams) -> bool:
    return True


def prepare(model: torch.nn.Module, hp: Hparams) -> torch.nn.Module:
    """Freeze every parameter except down_proj.weight of the trainable layers."""
    check_layers(model, (hp.layer, *hp.trainable_layers), "RMU layer")
    model.requires_grad_(False)
    layers = decoder_layers(model)
    for i in hp.trainable_layers:
        layers[i].mlp.down_proj.weight.requires_grad_(True)
    return model


def control_vector(d: int, hp: Hparams) -> torch.Tensor:
    """c * v / ||v|| with v ~ U[0,1)^d from a generator seeded with hp.seed: (d,)."""
    v = torch.rand(d, generator=torch.Generator().manual_seed(hp.seed))
    return hp.steering_coeff * v / v.norm()


def masked_mse(h: torch.Tensor, target: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """mean_b [ sum_t mean_d (h - target)^2 / #t ] over answer tokens (labels != -100)."""
    per_token = (h.float() - target.float()).square().mean(-1)  # (B, T)
    mask = labels != IGNORE
    per_seq = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)  # (B,)
    return per_seq.mean()


def loss(batch: dict, model: torch.nn.Module, ref_model: torch.nn.Module, hp: Hparams):
    forget, retain = batch["forget"], batch["retain"]
    with captured(decoder_layers(model)[hp.layer]) as acts:
        forward(model, forget)
        forward(model, retain)
    h_forget, h_retain = acts
    with torch.no_grad(), captured(decoder_layers(ref_model)[hp.layer]) as ref_acts:
        forward(ref_model, retain)
    u = control_vector(h_forget.shape[-1], hp).to(h_forget.device)
    forget_loss = masked_mse(h_forget, u.expand_as(h_forget), forget["labels"])
    retain_loss = masked_mse(h_retain, ref_acts[0], retain["labels"])
    total = hp.gamma * forget_loss + hp.alpha * retain_loss
    return total, {"forget_mse": forget_loss.detach(), "retain_mse": retain_loss.detach()}
