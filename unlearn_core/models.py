"""Load any Hugging Face causal LM (hub id or local folder), pick dtype/attention for the device,
add LoRA adapters, and build the frozen reference copy that some methods need; save a trained model
so that loading it gives the same model (GRUN's edit included)."""

from __future__ import annotations

import copy
import importlib.util
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from unlearn_core.errors import UserError
from unlearn_core.paths import check_model_path, check_remote_code, looks_local

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ATTENTION = ("auto", "eager", "sdpa", "flash_attention_2")
LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelConfig:
    """Which model to load and how. `lora_r` = 0 means full fine-tuning."""

    path: str
    dtype: str = "auto"  # auto: bf16 on a GPU that supports it, fp32 on CPU
    attn_implementation: str = "auto"  # auto: flash_attention_2 if installed on GPU, else sdpa
    trust_remote_code: bool = False
    lora_r: int = 0
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = LORA_TARGETS

    def __post_init__(self) -> None:
        if self.dtype != "auto" and self.dtype not in DTYPES:
            raise UserError(f"unknown dtype {self.dtype!r}; accepted: auto, {', '.join(DTYPES)}")
        if self.attn_implementation not in ATTENTION:
            raise UserError(
                f"unknown attention {self.attn_implementation!r}; accepted: {', '.join(ATTENTION)}"
            )
        if self.lora_r < 0:
            raise UserError(f"lora_r must be >= 0 (0 = full fine-tuning), got {self.lora_r}")


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_dtype(cfg: ModelConfig, device: torch.device) -> torch.dtype:
    if cfg.dtype != "auto":
        return DTYPES[cfg.dtype]
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def resolve_attention(cfg: ModelConfig, device: torch.device, dtype: torch.dtype) -> str:
    if cfg.attn_implementation != "auto":
        return cfg.attn_implementation
    half = dtype in (torch.bfloat16, torch.float16)
    if device.type == "cuda" and half and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def load_tokenizer(path: str, trust_remote_code: bool = False):
    check_model_path(path)
    check_remote_code(path, trust_remote_code)
    from transformers import AutoTokenizer  # loaded here: the command line starts without it

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:  # Llama-style tokenizers ship none; EOS is the usual stand-in
        tok.pad_token = tok.eos_token
    return tok


def _quiet_loading() -> None:
    """No per-load bars from transformers ("Loading weights"), but the hub's download bars stay:
    a first download of a 16 GB model shows its progress (unless HF_HUB_DISABLE_PROGRESS_BARS is
    set, which the hub keeps)."""
    from huggingface_hub.utils import are_progress_bars_disabled, enable_progress_bars
    from transformers.utils import logging as hf_logging

    downloads_shown = not are_progress_bars_disabled()
    hf_logging.disable_progress_bar()  # transformers' own bars, and the hub's with them
    if downloads_shown:
        enable_progress_bars()


def load_model(cfg: ModelConfig, device: torch.device | None = None) -> torch.nn.Module:
    """The model on `device`, in train mode, LoRA-wrapped if asked."""
    check_model_path(cfg.path)
    check_remote_code(cfg.path, cfg.trust_remote_code)
    device = device or default_device()
    dtype = resolve_dtype(cfg, device)
    from transformers import AutoModelForCausalLM

    _quiet_loading()
    try:
        model = AutoModelForCausalLM.from_pretrained(
            cfg.path,
            dtype=dtype,
            attn_implementation=resolve_attention(cfg, device, dtype),
            trust_remote_code=cfg.trust_remote_code,
        )
    except OSError as e:  # missing files, hub unreachable when offline
        raise UserError(f"cannot load model {cfg.path!r}: {str(e).splitlines()[0]}") from e
    model.to(device)
    if looks_local(cfg.path):  # a GRUN model's edit lives beside its weights (save_model)
        from unlearn_core.methods._grun_edit import attach_saved

        model = attach_saved(model, Path(cfg.path).expanduser())
    if cfg.lora_r > 0:
        model = add_lora(model, cfg)
    model.train()
    return model


def save_model(model: torch.nn.Module, out: Path) -> None:
    """save_pretrained into `out`; a GRUN edit, which the Hugging Face class would not rebuild at
    load, goes into files of its own beside the weights and is left out of them."""
    from unlearn_core.methods._grun_edit import save_edit

    out.mkdir(parents=True, exist_ok=True)
    prefix = save_edit(model, out)
    if prefix is None:
        model.save_pretrained(out)
        return
    state = {k: v for k, v in model.state_dict().items() if not k.startswith(prefix)}
    model.save_pretrained(out, state_dict=state)


def add_lora(model: torch.nn.Module, cfg: ModelConfig) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model  # peft's import costs seconds; only when asked

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    targets = [t for t in cfg.lora_targets if t in present]
    if not targets:
        raise UserError(f"none of the LoRA target modules {cfg.lora_targets} exist in this model")
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def frozen_reference(model: torch.nn.Module, lora: bool = False) -> torch.nn.Module | AdapterOff:
    """The model as it is now (before unlearning), frozen: under LoRA the same model with its
    adapters off (AdapterOff: no second copy of the base weights, which LoRA never trains), else
    a frozen deep copy in eval mode."""
    if lora:
        return AdapterOff(model)
    ref = copy.deepcopy(model)
    ref.eval()
    ref.requires_grad_(False)
    return ref


@dataclass(frozen=True)
class AdapterOff:
    """A LoRA model's reference: called as a model is (logprobs.forward), it runs the model being
    trained with peft's adapters disabled, in eval mode and without a graph, so its logits are
    the base model's, as the frozen copy's were. Only logits are asked of it: the methods that
    read a reference's layers or weights (RMU, GRUN, task vectors) refuse LoRA."""

    model: torch.nn.Module  # a peft PeftModel

    def __call__(self, **inputs: torch.Tensor):
        with torch.no_grad(), self.model.disable_adapter(), _eval_mode(self.model):
            return self.model(**inputs)


@contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Every module in eval mode (no dropout: the frozen copy was in eval mode), each put back in
    the mode it had."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def trainable_parameters(model: torch.nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if p.requires_grad]
