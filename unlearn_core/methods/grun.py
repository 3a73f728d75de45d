"""Gated representation unlearning (GRUN): frozen model, gated low-rank edit at the prompt's end.

Ren et al. 2025, "A General Framework to Enhance Fine-tuning-based LLM Unlearning" (arXiv
2502.17823; renjie3/GRUN). At each layer in `layers` the block output h at the last prompt token
becomes h + g(h) * R^T(W h + b - R h) (LoReFT, rank r, R with orthonormal rows), g = sigmoid of a
linear gate (GRUN's `linear` gate_func). Only the edits train; the gate learns by BCE (forget
prompts 1, retain prompts 0). With the edited model pi and the un-edited model pi_0 (same weights,
edit off, so no reference copy), the inner loss is
  L = F + retain_weight * NLL(retain) + gate_weight * BCE, with the forget term F
  gd:  -forget_weight * NLL(forget)
  npo: npo_coeff * NPO(pi vs pi_0 on forget, beta)
  idk: forget_weight * NLL(forget question, refusal)  (its gate reads the forget_idk prompts)
(NLL = mean over answer tokens, every pass of pi edited). `prepare` attaches the edits as
`model.grun`, active in every later forward, evaluation and generation included (see _grun_edit.py
for how the last prompt token is found there). They are parameters of the model; saving writes
them beside its weights (grun_edit.*) and models.load_model re-attaches them.
Defaults fit the 2-layer built-in model; reference (cmd_grun.sh, 32-layer 8B models): layers
(20, 25, 31), rank 4, gate_weight 10, retain_weight 2 (gd) or 1 (npo, idk), npo_coeff 100, beta 0.1,
lr 4e-3 (set in the train config), batch 16, 40 epochs, no warmup.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unlearn_core.logprobs import forward, mean_nll, npo_loss, sequence_nll
from unlearn_core.methods._grun_edit import GrunEdits, attach, last_prompt_positions, located
from unlearn_core.methods._layers import check_layers, unwrap

INNER = ("gd", "npo", "idk")
VIEWS = ("forget", "forget_idk", "retain")  # forget_idk: the idk inner loss


@dataclass(frozen=True)
class Hparams:
    inner: str = "gd"  # the fine-tuning loss the edit is trained with
    layers: tuple[int, ...] = (0, 1)  # edited decoder layers ((20, 25, 31) in cmd_grun.sh)
    rank: int = 4  # LoReFT rank (cmd_grun.sh)
    gate_weight: float = 10.0  # BCE weight (cmd_grun.sh TOFU)
    retain_weight: float = 2.0  # retain NLL weight (cmd_grun.sh gated GD; 1 for NPO and IDK)
    forget_weight: float = 1.0  # gd: ascent weight (grad_diff_forget_weight); idk: refusal NLL
    npo_coeff: float = 100.0  # npo: NPO weight (cmd_grun.sh)
    beta: float = 0.1  # npo: inverse temperature
    seed: int = 0  # initialises the edits

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        if self.inner not in INNER:
            raise ValueError(f"inner must be one of {', '.join(INNER)}, got {self.inner!r}")
        if not self.layers or self.rank < 1 or self.beta <= 0:
            raise ValueError("GRUN needs at least one layer, rank >= 1 and beta > 0")


# GRUN freezes the model and trains its own edits; LoRA adapters would stay frozen (refused)
NO_LORA = "freezes the model and trains its own edit and gate modules, not LoRA adapters"


def needs_reference(hp: Hparams) -> bool:
    return False  # NPO's reference is the same model with the edit off


def prepare(model: torch.nn.Module, hp: Hparams) -> torch.nn.Module:
    """Freeze the model, attach the edits and their hooks (for the model's lifetime)."""
    check_layers(model, hp.layers, "GRUN layer")
    model.requires_grad_(False)
    p = next(model.parameters())
    edits = GrunEdits(model.config.hidden_size, hp.layers, hp.rank, hp.seed).to(p.device)
    return attach(model, edits)


def _edited(model: torch.nn.Module, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits with the edit at the last prompt token, and the gate logits of every edited layer."""
    positions = last_prompt_positions(inputs["labels"])
    unwrap(model).grun.record_anchor(inputs["input_ids"], positions)
    with located(positions) as gates:
        logits = forward(model, inputs)
    return logits, torch.cat(gates)


def loss(batch: dict, model: torch.nn.Module, ref_model: torch.nn.Module | None, hp: Hparams):
    forget, retain = batch["forget"], batch["retain"]
    if hp.inner == "idk":
        forget = batch["forget_idk"]
    f_logits, f_gates = _edited(model, forget)
    r_logits, r_gates = _edited(model, retain)
    retain_nll = mean_nll(r_logits, retain["labels"])
    gates = torch.cat([f_gates, r_gates])
    targets = torch.cat([torch.ones_like(f_gates), torch.zeros_like(r_gates)])
    bce = F.binary_cross_entropy_with_logits(gates, targets)
    logs = {
        "retain_nll": retain_nll.detach(),
        "gate_bce": bce.detach(),
        "gate_forget": torch.sigmoid(f_gates).mean().detach(),
        "gate_retain": torch.sigmoid(r_gates).mean().detach(),
    }
    if hp.inner == "gd":
        forget_nll = mean_nll(f_logits, forget["labels"])
        forget_term = -hp.forget_weight * forget_nll
        logs["forget_nll"] = forget_nll.detach()
    elif hp.inner == "idk":
        idk_nll = mean_nll(f_logits, forget["labels"])
        forget_term = hp.forget_weight * idk_nll
        logs["forget_idk_nll"] = idk_nll.detach()
    else:
        with located(None), torch.no_grad():
            base_logits = forward(model, forget)
        logp = -sequence_nll(f_logits, forget["labels"])
        logp_base = -sequence_nll(base_logits, forget["labels"])
        forget_term = hp.npo_coeff * npo_loss(logp, logp_base, hp.beta)
        logs["forget_logratio"] = (logp - logp_base).mean().detach()
    total = forget_term + hp.retain_weight * retain_nll + hp.gate_weight * bce
    return total, logs
