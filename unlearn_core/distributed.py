"""Training on several processes: the accelerator of a process group someone else started (Ray
Train's workers), torch FSDP2 sharding, and the full (gathered) weights and optimizer state that
checkpoints hold, so a sharded run saves and resumes through LoopState like a single one."""

from __future__ import annotations

import torch
import torch.distributed as dist
from accelerate import Accelerator
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor

STRATEGIES = ("ddp", "fsdp")  # how a trial of several processes splits (train.unlearn)
FULL = StateDictOptions(full_state_dict=True)  # every rank gets (and gives) whole tensors


def accelerator() -> Accelerator:
    """This process's Accelerator. Under Ray Train the process group exists already and RANK,
    WORLD_SIZE, LOCAL_RANK and MASTER_ADDR are set (ray.train.torch's backend); accelerate reads
    them and keeps the group. On a CPU-only worker `cpu=True`: gloo, MULTI_CPU."""
    return Accelerator(gradient_accumulation_steps=1, cpu=not torch.cuda.is_available())


def shard(model: torch.nn.Module) -> torch.nn.Module:
    """FSDP2: every decoder layer (the classes Hugging Face names in `_no_split_modules`) its own
    unit, gathered for its forward and backward and then freed, the rest in the root's. In
    place: parameters become DTensors, so the optimizer must be built after. A frozen model (the
    reference) shards the same way."""
    layers = set(model._no_split_modules or ())
    for module in model.modules():
        if type(module).__name__ in layers:
            fully_shard(module)
    return fully_shard(model)


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor of a sharded one (a collective: every rank calls it); others as given."""
    return t.full_tensor() if isinstance(t, DTensor) else t


def like(param: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """`value` (whole) laid out as `param` is: this rank's shard of a DTensor parameter."""
    if isinstance(param, DTensor):
        return distribute_tensor(value.to(param.device), param.device_mesh, param.placements)
    return value


def sharded(model: torch.nn.Module) -> bool:
    return any(isinstance(p, DTensor) for p in model.parameters())


def optimizer_state(model: torch.nn.Module, opt: torch.optim.Optimizer) -> dict:
    """The optimizer's state; of a sharded model whole, keyed by parameter name (a collective)."""
    if not sharded(model):
        return opt.state_dict()
    return get_optimizer_state_dict(model, opt, options=FULL)


def load_optimizer_state(model: torch.nn.Module, opt: torch.optim.Optimizer, state: dict) -> None:
    """optimizer_state's inverse; each rank keeps its shard of the whole state."""
    if not sharded(model):
        opt.load_state_dict(state)
        return
    set_optimizer_state_dict(model, opt, state, options=FULL)


def mean_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """The mean of `t` over the ranks (every rank then sees the same value: a divergence check
    on it stops every rank together, where one rank stopping alone would leave the others
    waiting in a collective)."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return t
    out = t.clone()
    dist.all_reduce(out)
    return out / dist.get_world_size()
