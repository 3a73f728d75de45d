"""Gradient ascent (GA): maximise the forget-set NLL, L = -NLL(forget).

The plain baseline of every unlearning paper (e.g. Jang et al. 2023; TOFU, Maini et al. 2024).
It has no retain term and collapses the model when run long; sweeps find where it stops in time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearn_core.logprobs import forward, mean_nll


@dataclass(frozen=True)
class Hparams:
    """GA has no knobs of its own; lr and epochs are the optimiser's."""


def needs_reference(hp: Hparams) -> bool:
    return False


def loss(batch: dict, model: torch.nn.Module, ref_model: None, hp: Hparams):
    forget = batch["forget"]
    forget_nll = mean_nll(forward(model, forget), forget["labels"])
    return -forget_nll, {"forget_nll": forget_nll.detach()}
