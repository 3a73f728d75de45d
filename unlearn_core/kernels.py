"""Optional fused GPU kernels: liger-kernel's RMSNorm, RoPE and SwiGLU (the `liger` extra), on
the trained model's decoder layers. Off by default; the plain torch path stays the exact one.

liger's fused linear cross-entropy (the part that never materialises the logits) is not used:
it returns a mean loss, and every method here needs per-token log-probabilities
(logprobs.token_logprobs, which already never holds an fp32 (batch x length x vocab) tensor)."""

from __future__ import annotations

import importlib.util

import torch

from unlearn_core.errors import UserError

# liger's own switches: the layer kernels on, both of its losses off (see the module docstring)
LIGER_KERNELS = dict(
    rope=True, rms_norm=True, swiglu=True, cross_entropy=False, fused_linear_cross_entropy=False
)


def check_liger(on: bool, device: torch.device) -> None:
    """Refuse, in one line, `liger` where it cannot run: its kernels are Triton's, CUDA only."""
    if not on:
        return
    if device.type != "cuda":
        raise UserError(f"liger runs Triton kernels on CUDA GPUs only, this job runs on {device}")
    if importlib.util.find_spec("liger_kernel") is None:
        raise UserError(
            "liger needs the liger-kernel package: pip install 'unlearn-sweep[liger]', "
            "or leave liger off"
        )


def apply_liger(model: torch.nn.Module) -> None:
    """liger's kernels on `model` in place (a peft model's base); a model type liger has no
    kernels for is refused rather than left silently unpatched."""
    from liger_kernel.transformers import _apply_liger_kernel_to_instance
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    kind = getattr(getattr(base, "config", None), "model_type", None)
    if kind not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        raise UserError(
            f"liger has no kernels for model type {kind!r}; accepted: "
            f"{', '.join(sorted(MODEL_TYPE_TO_APPLY_LIGER_FN))}"
        )
    _apply_liger_kernel_to_instance(model=base, **LIGER_KERNELS)
