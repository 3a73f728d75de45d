"""Access to decoder layers for methods that read or edit hidden states (RMU, GRUN) or keep state
on the model (PDU, TAU): unwrap DDP, find the layers, capture a layer's output inside one `with`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.nn.parallel import DistributedDataParallel

from unlearn_core.errors import UserError


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model itself when accelerate wrapped it for multi-GPU training (DDP)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def decoder_layers(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The decoder blocks of a Hugging Face causal LM (model.model.layers for Llama)."""
    return unwrap(model).get_decoder().layers


def hidden(output: torch.Tensor | tuple) -> torch.Tensor:
    """A decoder layer returns its hidden states, alone or first in a tuple (version-dependent)."""
    return output[0] if isinstance(output, tuple) else output


@contextmanager
def captured(layer: torch.nn.Module) -> Iterator[list[torch.Tensor]]:
    """Collect the layer's output hidden states (B, T, d), one per forward pass in the block."""
    acts: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, out: acts.append(hidden(out)))
    try:
        yield acts
    finally:
        handle.remove()


def check_layers(model: torch.nn.Module, layers: tuple[int, ...], what: str) -> None:
    """Fail with a user-facing message when a layer index is outside the model."""
    n = len(decoder_layers(model))
    bad = [i for i in layers if not 0 <= i < n]
    if bad:
        raise UserError(f"{what} {bad[0]} is not a layer of this {n}-layer model")
