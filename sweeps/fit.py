"""Will every trial fit? At sweep start, `unlearn-sweep plan`'s estimate (unlearn_core/plan.py)
of each method's trial against the memory a trial gets on the cluster's GPUs; a configuration
that cannot fit is refused in one line, before anything is written, naming the largest item and
the sweep flag that shrinks it. CPU trials (host memory) are not checked."""

from __future__ import annotations

import logging

from sweeps.config import SweepConfig
from unlearn_core.benchmarks import default_format, get_benchmark
from unlearn_core.errors import UserError
from unlearn_core.evaluate import EvalConfig
from unlearn_core.methods import get_method
from unlearn_core.plan import GIB, PLAN_PRECISIONS, PlanInputs, model_shape, read_config, refusal

log = logging.getLogger(__name__)
# plan's flags as a GPU sweep spells them (None: no sweep flag sets it; k workers of one GPU each
# are --gpus-per-trial k)
SWEEP_FLAGS = {"--workers": "--gpus-per-trial", "--seq-len": None}


def plan_of(cfg: SweepConfig) -> PlanInputs | None:
    """One trial of cfg as plan sees it: the model (given, or the benchmark's default target on
    the hub), the method at its defaults, precision as on a GPU, LoRA, workers and strategy,
    micro-batch, the prompt's max_length, evaluation batch. None without a model config to
    read (a built-in benchmark's tiny target, or TOFU without --model)."""
    model = cfg.source.model or get_benchmark(cfg.source.benchmark).target
    if model is None:
        return None
    method = get_method(cfg.method)
    precision = PLAN_PRECISIONS[0] if cfg.precision in (None, "auto") else cfg.precision
    return PlanInputs(
        model_shape(read_config(model)),
        reference=method.needs_reference(method.hparams()),
        views=len(method.views),
        precision=precision,
        lora_r=cfg.source.lora_r,
        strategy=cfg.strategy,
        workers=cfg.workers(),
        batch_size=cfg.batch_size,
        seq_len=(cfg.source.prompt or default_format(cfg.source.benchmark)).max_length,
        eval_batch_size=cfg.eval_batch_size or EvalConfig.batch_size,
        gradient_checkpointing=cfg.gradient_checkpointing,
    )


def sweep_refusal(plan: PlanInputs, device_gib: float, method: str) -> str | None:
    """plan.refusal with its fixes in sweep flags (a fix no sweep flag gives is left out)."""
    line = refusal(plan, device_gib)
    if line is None:
        return None
    head, _, fixes = line.partition(": try ")
    kept = []
    for fix in fixes.split(" or "):
        words = [SWEEP_FLAGS.get(w, w) for w in fix.split(" ")]
        if None not in words:
            kept.append(" ".join(words))
    return f"{method}: {head}" + (f": try {' or '.join(kept)}" if kept else "")


def trial_device_gib(cfg: SweepConfig) -> float:
    """GiB of device memory one trial's worker gets: its GPU's total, times the fraction of it
    Ray gives the trial (gpus_per_trial < 1 shares the card), read by a Ray task on such a GPU."""
    import ray

    share = min(1.0, cfg.gpus_per_trial)

    @ray.remote(num_gpus=share, num_cpus=0)
    def total_memory() -> float:
        import torch

        return torch.cuda.get_device_properties(0).total_memory / GIB

    return ray.get(total_memory.remote()) * share


def check_fits(cfgs: list[SweepConfig], device_gib: float | None = None) -> None:
    """Refuse the first method whose trial cannot fit `device_gib` (None: read from the cluster
    for GPU trials; CPU trials are not checked)."""
    for cfg in cfgs:
        if device_gib is None and cfg.gpus_per_trial == 0:
            continue
        try:
            plan = plan_of(cfg)
        except UserError as e:  # e.g. a hub model this driver cannot reach: the trials may
            log.warning("%s: memory not checked before the sweep (%s)", cfg.method, e)
            continue
        if plan is None:
            continue
        gib = trial_device_gib(cfg) if device_gib is None else device_gib
        line = sweep_refusal(plan, gib, cfg.method)
        if line is not None:
            raise UserError(line)
