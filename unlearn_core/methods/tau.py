"""Task arithmetic for unlearning (TAU): the task-vector negation applied to an SGA-unlearned model.

Barbulescu & Triantafillou 2024 (arXiv 2405.03097), as DUSK runs it (scripts/baselines_TAU.sh,
forget_tv.py): first SGA (see sga.py) from the target model, then the TV recipe starting from that
SGA checkpoint theta_sga: fine-tune on the forget set (+NLL) to theta_ft and set
  theta = theta_sga - scale * (theta_ft - theta_sga).
Here both phases are one run: optimizer steps [0, sga_steps) do SGA, the rest fine-tune; the first
fine-tuning micro-batch snapshots theta_sga into buffers that `prepare` attaches (a second copy of
the weights, as the reference model of other methods), and `finalize` applies the negation. The
optimizer keeps separate Adam moments per phase (DUSK trains the phases in separate runs); the lr
schedule spans both phases. Defaults (DUSK): threshold 0.7, scale 1.0; sga_steps 5 = DUSK's 5 SGA
epochs, each about one optimizer step there (a ~50-chunk forget document at batch 32).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from unlearn_core.methods import sga, task_vector
from unlearn_core.methods._dual_adam import PhasedAdamW
from unlearn_core.methods._layers import unwrap


@dataclass(frozen=True)
class Hparams:
    sga_steps: int = 5  # optimizer steps of SGA before the task-vector phase (DUSK: 5 epochs)
    threshold: float = 0.7  # SGA selection (DUSK)
    scale: float = 1.0  # task-vector scale (DUSK forget_tv.py alpha)

    def __post_init__(self) -> None:
        sga.Hparams(self.threshold)
        task_vector.Hparams(self.scale)
        if self.sga_steps < 0:
            raise ValueError(f"sga_steps must be >= 0, got {self.sga_steps}")


class Snapshot(torch.nn.Module):
    """theta_sga as buffers (not saved with the model), filled once by `take`."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.names = [n for n, _ in model.named_parameters()]
        for i, (_, p) in enumerate(model.named_parameters()):
            self.register_buffer(f"p{i}", p.detach().clone(), persistent=False)
        self.register_buffer("taken", torch.tensor(False), persistent=False)

    @torch.no_grad()
    def take(self, model: torch.nn.Module) -> None:
        for i, (_, p) in enumerate(model.named_parameters()):
            self.get_buffer(f"p{i}").copy_(p)
        self.taken.fill_(True)

    def weights(self) -> dict[str, torch.Tensor]:
        return {n: self.get_buffer(f"p{i}") for i, n in enumerate(self.names)}


def needs_reference(hp: Hparams) -> bool:
    return False


def prepare(model: torch.nn.Module, hp: Hparams) -> torch.nn.Module:
    model.tau_snapshot = Snapshot(model)
    return model


def phase(sga_steps: int, step: int) -> int:
    """0 = SGA, 1 = task-vector fine-tuning."""
    return int(step >= sga_steps)


def optimizer(params, cfg, hp: Hparams) -> torch.optim.Optimizer:
    return PhasedAdamW(
        params, cfg.lr, cfg.weight_decay, functools.partial(phase, hp.sga_steps), (1.0, 1.0)
    )


def loss(batch: dict, model: torch.nn.Module, ref_model: torch.nn.Module | None, hp: Hparams):
    if phase(hp.sga_steps, batch["step"]) == 0:
        return sga.loss(batch, model, None, sga.Hparams(hp.threshold))
    if batch["step"] == hp.sga_steps:  # the first fine-tuning step: theta_sga (again at each of
        core = unwrap(model)  # its micro-batches, the same weights: no read of `taken`, a sync)
        core.tau_snapshot.take(core)
    return task_vector.loss(batch, model, None, task_vector.Hparams(hp.scale))


def finalize(model: torch.nn.Module, ref_model: torch.nn.Module | None, hp: Hparams) -> None:
    """The negation around theta_sga; the model is the SGA model if no fine-tuning step ran."""
    snapshot = model.tau_snapshot
    task_vector.negate(model, snapshot.weights(), hp.scale, where=snapshot.taken)
    del model.tau_snapshot
