"""How the optimizer steps: which micro-batches make each step, how each micro loss is scaled and
the learning-rate schedule over the steps, in this project's accounting or in open-unlearning's
(the HF Trainer of its pinned transformers 4.45.1 and accelerate 0.34.2); and which parameters
weight decay applies to."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch

from unlearn_core.errors import UserError

ACCOUNTINGS = ("unlearn-sweep", "open-unlearning")
# TrainConfig.schedule -> the name transformers' get_scheduler knows it by (its "constant" has
# no warmup; open-unlearning's MUSE runs pass warmup 0, so the two agree there)
HF_SCHEDULES = {"linear": "linear", "cosine": "cosine", "constant": "constant_with_warmup"}


class TrainFields(Protocol):
    """The fields of train.TrainConfig read here (train.py imports this module, not the reverse)."""

    epochs: int
    batch_size: int
    grad_accum: int
    warmup_epochs: float
    schedule: str
    step_accounting: str

    @property
    def last_epoch(self) -> int: ...


@dataclass(frozen=True)
class StepPlan:
    """The optimizer steps of a run, by global micro-batch index g, counted over all epochs and
    never reset (micro-batch i of data epoch e, both 0-based, is g = e * micro_per_epoch + i)."""

    accounting: str
    grad_accum: int
    micro_per_epoch: int  # micro-batches per data epoch on each rank
    steps_per_epoch: int  # the per-epoch count the schedule is sized from
    total_steps: int  # the schedule's length: optimizer steps of the full cfg.epochs run
    warmup_steps: int
    ends: tuple[int, ...]  # g of the last micro-batch of each step of the full run, in order
    last_epoch: int  # data epochs the run touches (with stop_after, or until the last step)
    run_steps: int  # optimizer steps the run takes (fewer than total_steps with stop_after)

    def micro_in(self, epoch: int) -> int:
        """Micro-batches run in data epoch `epoch` (0-based): all of them, except in the epoch in
        which the full run's last step falls (open-unlearning stops there, mid-epoch)."""
        return min(self.micro_per_epoch, self.ends[-1] + 1 - epoch * self.micro_per_epoch)

    def group(self, g: int) -> tuple[int, bool]:
        """(micro-batches in the step that micro-batch g belongs to, whether g is its last)."""
        k = bisect.bisect_left(self.ends, g)
        start = self.ends[k - 1] + 1 if k else 0
        return self.ends[k] - start + 1, self.ends[k] == g

    def divisor(self, size: int) -> int:
        """What a micro loss in a step of `size` micro-batches is divided by: the step's size here
        (a short step is a mean too); always grad_accum in HF (accelerate's backward divides by
        it, for a short or a carried step alike)."""
        return size if self.accounting == "unlearn-sweep" else self.grad_accum


def step_plan(n_forget: int, cfg: TrainFields, world: int) -> StepPlan:
    """The step plan of `n_forget` forget rows on `world` ranks under cfg.step_accounting.

    unlearn-sweep: each data epoch is cut into steps of grad_accum micro-batches, the last one
    short; warmup is int(warmup_epochs * steps per epoch) steps.
    open-unlearning: the optimizer steps whenever the global micro-batch count reaches a multiple
    of grad_accum, so a partial step at an epoch's end carries its gradients into the next epoch
    (when an epoch has no more than grad_accum micro-batches its last one also steps); the
    schedule has max(M // grad_accum, 1) steps per epoch, training stops at the schedule's last
    step (possibly epochs early: leftover micro-batches never step) and warmup is
    int(warmup_epochs * n // effective batch) steps (its load_trainer_args; it divides by the
    visible GPUs, equal to `world` on one node)."""
    micro = math.ceil((n_forget // world) / cfg.batch_size)
    if micro == 0:
        raise UserError(f"the forget set ({n_forget} rows) is smaller than one batch per device")
    accum = cfg.grad_accum
    if cfg.step_accounting == "unlearn-sweep":
        per_epoch = math.ceil(micro / accum)
        warmup = int(cfg.warmup_epochs * per_epoch)
        ends = [
            e * micro + min(j + accum, micro) - 1
            for e in range(cfg.epochs)
            for j in range(0, micro, accum)
        ]
    else:
        per_epoch = max(micro // accum, 1)
        warmup = int((cfg.warmup_epochs * n_forget) // (cfg.batch_size * accum * world))
        ends = _hf_ends(micro, accum, math.ceil(cfg.epochs * per_epoch))
    last = min(cfg.last_epoch, ends[-1] // micro + 1)
    return StepPlan(
        accounting=cfg.step_accounting,
        grad_accum=accum,
        micro_per_epoch=micro,
        steps_per_epoch=per_epoch,
        total_steps=len(ends),
        warmup_steps=warmup,
        ends=tuple(ends),
        last_epoch=last,
        run_steps=bisect.bisect_left(ends, last * micro),
    )


def _hf_ends(micro: int, accum: int, max_steps: int) -> list[int]:
    """The global micro-batch index of each of HF Trainer's first max_steps optimizer steps:
    its total_batched_samples % accum == 0, or the epoch's last micro-batch when the epoch holds
    no more than accum of them. Always reached: floor(e * M / accum) >= e * (M // accum)."""
    ends: list[int] = []
    g = 0
    while len(ends) < max_steps:
        if (g + 1) % accum == 0 or (micro <= accum and g % micro == micro - 1):
            ends.append(g)
        g += 1
    return ends


def lr_lambda(cfg: TrainFields, total: int, warmup: int) -> Callable[[int], float]:
    """This project's schedule: warmup (step + 1) / (warmup + 1), so no step runs at LR 0."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if cfg.schedule == "cosine":
            return 0.5 * (1.0 + math.cos(math.pi * progress))
        return max(0.0, 1.0 - progress)

    return factor


def scheduler(
    opt: torch.optim.Optimizer, cfg: TrainFields, plan: StepPlan
) -> torch.optim.lr_scheduler.LambdaLR:
    """The LR schedule over plan.total_steps: ours, or transformers' own (open-unlearning's, whose
    linear warmup starts at step / warmup, so its first step runs at LR 0)."""
    if plan.accounting == "unlearn-sweep":
        factor = lr_lambda(cfg, plan.total_steps, plan.warmup_steps)
        return torch.optim.lr_scheduler.LambdaLR(opt, factor)
    from transformers import get_scheduler  # lazy: transformers is slow to import

    return get_scheduler(
        HF_SCHEDULES[cfg.schedule],
        opt,
        num_warmup_steps=plan.warmup_steps,
        num_training_steps=plan.total_steps,
    )


def _is_norm(module: torch.nn.Module) -> bool:
    """A normalisation layer: torch's LayerNorm, RMSNorm or GroupNorm, or any class whose name ends
    in "Norm" (transformers' LlamaRMSNorm, Qwen2RMSNorm, OlmoLayerNorm, ... subclass nn.Module)."""
    norms = (torch.nn.LayerNorm, torch.nn.RMSNorm, torch.nn.GroupNorm)
    return isinstance(module, norms) or type(module).__name__.endswith("Norm")


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """The trainable parameters as optimizer groups: weight decay for all but biases and the
    weights of normalisation layers, as HF Trainer (so open-unlearning and closer-look) decays.
    Its rule: no decay for a parameter of a normalisation module (decided by the module's type,
    _is_norm) or with "bias" in its name. Decaying a norm's gain pulls it towards 0, shrinking
    the layer's output, which is not what the regulariser is for."""
    spared = {id(p) for m in model.modules() if _is_norm(m) for p in m.parameters()}
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if id(p) in spared or "bias" in name else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    groups.append({"params": no_decay, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]  # LoRA: no trainable norms
