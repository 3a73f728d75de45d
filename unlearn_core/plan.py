"""Will a trial fit? Per-device memory of one unlearning trial from the model's config alone
(parameters counted on the meta device, no weights loaded), the method, precision, LoRA rank,
DDP/FSDP over k workers, micro-batch and sequence length; `unlearn-sweep plan` prints it."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from unlearn_core.distributed import STRATEGIES
from unlearn_core.errors import UserError
from unlearn_core.evaluate import EvalConfig
from unlearn_core.models import LORA_TARGETS
from unlearn_core.train import TrainConfig

GIB = 2**30
PLAN_PRECISIONS = ("bf16-mixed", "bf16", "fp32")  # TrainConfig's, auto resolved as on a GPU
ITEMS = (  # the breakdown's rows, in print order; the total adds them as estimate() says
    "weights",
    "gradients",
    "optimizer state",
    "gradient buckets",
    "reference model",
    "epoch-end snapshot",
    "activations",
    "logits",
    "evaluation",
)


@dataclass(frozen=True)
class ModelShape:
    """What the estimate reads from a model config: dimensions and exact parameter counts."""

    n_params: int  # all parameters, a tied embedding counted once
    hidden: int
    layers: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    layer_params: int  # one decoder layer's (what FSDP gathers at a time)
    lora_per_rank: int  # adapter parameters per unit of LoRA rank: sum of in + out features


@dataclass(frozen=True)
class PlanInputs:
    """One trial's settings. Sizes in elements; every byte count comes from estimate()."""

    shape: ModelShape
    reference: bool  # the method's needs_reference at its defaults
    views: int = 2  # forward passes with a graph per micro-batch (the method's views)
    precision: str = "bf16-mixed"
    lora_r: int = 0  # 0 = full fine-tuning
    strategy: str = "ddp"
    workers: int = 1
    batch_size: int = TrainConfig.batch_size  # per device
    seq_len: int = 512
    eval_batch_size: int = EvalConfig.batch_size
    gradient_checkpointing: bool = False
    # bytes per element the model is loaded in, which a frozen reference and a LoRA base keep:
    # 2 (bf16) on a GPU that has it (models.resolve_dtype), 4 on a CPU
    load_bytes: int = 2

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise UserError(
                f"unknown strategy {self.strategy!r}; accepted: {', '.join(STRATEGIES)}"
            )
        if self.workers < 1:
            raise UserError(f"--workers must be >= 1, got {self.workers}")
        if self.strategy == "fsdp" and self.workers == 1:
            raise UserError("--strategy fsdp shards over workers: give --workers 2 or more")
        if self.precision not in PLAN_PRECISIONS:
            raise UserError(
                f"unknown precision {self.precision!r}; "
                f"accepted: auto, {', '.join(PLAN_PRECISIONS)}"
            )
        for name in ("batch_size", "seq_len", "eval_batch_size", "views"):
            if getattr(self, name) < 1:
                raise UserError(
                    f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}"
                )
        if self.lora_r < 0:
            raise UserError(f"--lora-r must be >= 0 (0 = full fine-tuning), got {self.lora_r}")


def read_config(model: str):
    """The transformers config of a hub id, a model folder, or a config.json file; no weights.
    Raises UserError when there is none."""
    from transformers import AutoConfig

    path = Path(model).expanduser()
    if path.is_file():
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict) or "model_type" not in doc:
            raise UserError(f"{model} is not a transformers config.json (no model_type)")
        return AutoConfig.for_model(doc.pop("model_type"), **doc)
    if path.is_dir() and not (path / "config.json").is_file():
        raise UserError(f"model path {model!r} has no config.json")
    if not path.exists() and model.startswith((".", "/", "~")):
        raise UserError(f"model path {model!r} does not exist")
    try:
        return AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as e:  # not on the hub, offline, or not a config
        raise UserError(f"cannot read the config of {model!r}: {str(e).splitlines()[0]}") from e


def model_shape(config) -> ModelShape:
    """Dimensions and exact parameter counts of a config's causal LM, built on the meta device
    (shapes only: an 8B model costs no memory and ~2 s)."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    n_params = sum(p.numel() for p in model.parameters())  # tied weights come once
    lora = sum(  # as models.add_lora: every Linear named like one of its targets
        m.in_features + m.out_features
        for n, m in model.named_modules()
        if isinstance(m, torch.nn.Linear) and n.rsplit(".", 1)[-1] in LORA_TARGETS
    )
    blocks = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    layer_params = max(sum(p.numel() for p in b[0].parameters()) for b in blocks) if blocks else 0
    heads = config.num_attention_heads
    # configs name the optional dimensions or leave them at their defaults (GQA off, h / heads)
    kv = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return ModelShape(
        n_params=n_params,
        hidden=config.hidden_size,
        layers=config.num_hidden_layers,
        intermediate=getattr(config, "intermediate_size", None) or 4 * config.hidden_size,
        heads=heads,
        kv_heads=kv,
        head_dim=head_dim,
        vocab=config.vocab_size,
        layer_params=layer_params,
        lora_per_rank=lora,
    )


def activation_bytes_per_token(s: ModelShape, precision: str) -> int:
    """Bytes one decoder layer saves for backward per token (HF Llama with sdpa attention, which
    keeps no T x T scores). Each of the two RMSNorms upcasts to fp32 and saves its fp32 input and
    normalised output, then the weighted output the projections read (fp32; bf16 in pure bf16),
    plus under autocast the projections' bf16 copy of it; attention saves q and k after RoPE, v,
    its output and o_proj's contiguous input (3h + 2 kv*hd); the SwiGLU MLP saves gate,
    silu(gate), up and their product (4i)."""
    h = s.hidden
    norm = {"fp32": 12 * h, "bf16-mixed": 12 * h + 2 * h, "bf16": 8 * h + 2 * h}[precision]
    e = 4 if precision == "fp32" else 2  # compute dtype (bf16 under autocast)
    return 2 * norm + (3 * h + 2 * s.kv_heads * s.head_dim + 4 * s.intermediate) * e


def estimate(p: PlanInputs) -> dict[str, float]:
    """Per-device bytes of each ITEMS row and the total. Everything persistent adds up; of the
    transients the total takes the largest: backward frees each layer's activations as it makes
    that layer's gradients (and the logits first), so a step peaks at max(activations + logits,
    gradients); the epoch-end evaluation runs after the step has freed its gradients."""
    s, k = p.shape, p.workers
    shard = k if p.strategy == "fsdp" else 1  # FSDP shards weights, gradients and AdamW state
    lora = p.lora_r * s.lora_per_rank
    trained = lora if p.lora_r else s.n_params
    store = 2 if p.precision == "bf16" else 4  # trained weights (bf16-mixed: fp32 masters)
    frozen = (
        0 if not p.lora_r else s.n_params * (p.load_bytes if p.precision == "bf16-mixed" else store)
    )
    weights = (trained * store + frozen) / shard
    if (
        p.precision == "bf16-mixed"
    ):  # autocast's bf16 copy of each trained weight, kept for backward
        weights += 2 * trained / shard
    if p.strategy == "fsdp":  # the gathered layer being computed and the one prefetched
        weights += 2 * s.layer_params * (store if not p.lora_r else p.load_bytes)
    grads = trained * store / shard
    out = {
        "weights": weights,
        "gradients": grads,
        "optimizer state": 2 * trained * store / shard,  # AdamW m and v, in the weights' dtype
        "gradient buckets": grads if p.strategy == "ddp" and k > 1 else 0.0,  # DDP's flat copy
        # a deep copy made before training, in the loaded dtype; only the trained model goes
        # through accelerate's prepare, so FSDP does not shard it. LoRA: adapters off, no copy
        "reference model": float(s.n_params * p.load_bytes)
        if p.reference and not p.lora_r
        else 0.0,
        "epoch-end snapshot": 0.0,  # copied to the host
    }
    tokens = p.batch_size * p.seq_len
    per_layer = activation_bytes_per_token(s, p.precision)
    residual = 2 if p.precision == "bf16" else 4
    if p.gradient_checkpointing:  # layer inputs kept; one layer recomputed at a time
        acts = p.views * tokens * s.layers * s.hidden * residual + tokens * per_layer
    else:
        acts = p.views * tokens * s.layers * per_layer
    out["activations"] = float(acts + p.views * tokens * s.hidden * 3 * residual)  # final norm
    # each graph keeps its fp32 log-softmax (B, T, V); backward adds that row's gradient and the
    # logits' gradient
    out["logits"] = float((p.views + 2) * tokens * s.vocab * 4)
    eval_e = 2 if p.precision == "bf16" else 4  # no autocast in evaluation: the weights' dtype
    out["evaluation"] = float(p.eval_batch_size * p.seq_len * s.vocab * (eval_e + 4))
    step = max(out["gradients"], out["activations"] + out["logits"])
    persistent = sum(out[i] for i in ITEMS[:6] if i != "gradients")
    out["total"] = persistent + max(step, out["evaluation"])
    return out


def _fits(p: PlanInputs, device_bytes: float, **change) -> bool:
    return estimate(dataclasses.replace(p, **change))["total"] <= device_bytes


def _fixes(p: PlanInputs, item: str, device_bytes: float) -> list[str]:
    """The flags that shrink `item`, the smallest FSDP world that fits first."""
    fixes = []
    if item in ("weights", "gradients", "optimizer state", "gradient buckets"):
        ks = [k for k in (2, 4, 8, 16, 32, 64) if k > (p.workers if p.strategy == "fsdp" else 1)]
        fit = [k for k in ks if _fits(p, device_bytes, strategy="fsdp", workers=k)]
        fixes.append(f"--strategy fsdp --workers {fit[0] if fit else ks[-1]}")
    if item in ("weights", "gradients", "optimizer state", "gradient buckets", "reference model"):
        if not p.lora_r:
            fixes.append("--lora-r 16")
    if item == "activations" and not p.gradient_checkpointing:
        fixes.append("--gradient-checkpointing")
    if item in ("activations", "logits") and p.batch_size > 1:
        fixes.append(f"--batch-size {p.batch_size // 2}")
    if item == "evaluation" and p.eval_batch_size > 1:
        fixes.append(f"--eval-batch-size {p.eval_batch_size // 2}")
    return fixes or [f"--seq-len {max(1, p.seq_len // 2)}"]


def refusal(p: PlanInputs, device_gib: float) -> str | None:
    """None if the estimate fits in device_gib, else one line naming the largest item and the
    flags that would shrink it."""
    b = estimate(p)
    if b["total"] <= device_gib * GIB:
        return None
    item = max(ITEMS, key=lambda i: b[i])
    fixes = " or ".join(_fixes(p, item, device_gib * GIB))
    return (
        f"needs {b['total'] / GIB:.1f} GiB per device, {device_gib:.1f} available; the largest "
        f"item is {item} ({b[item] / GIB:.1f} GiB): try {fixes}"
    )
