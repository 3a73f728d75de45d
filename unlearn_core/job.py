"""One unlearning job end to end: resolve the benchmark, load models, evaluate before, unlearn,
evaluate after. The CLI's `unlearn` and every sweep trial call `run_job`."""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from unlearn_core import distributed
from unlearn_core.benchmarks import check_method, eval_data, write_json
from unlearn_core.config import from_plain, to_plain
from unlearn_core.errors import UserError
from unlearn_core.evaluate import EvalConfig
from unlearn_core.kernels import check_liger
from unlearn_core.methods import get_method
from unlearn_core.models import (
    ModelConfig,
    frozen_reference,
    load_model,
    load_tokenizer,
    save_model,
)
from unlearn_core.source import Source
from unlearn_core.suites import EvalData, Reference, Setup
from unlearn_core.tofu_eval import to_jsonable
from unlearn_core.train import (
    LoopState,
    LossHook,
    StepCallback,
    TrainConfig,
    TrainResult,
    unlearn,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobConfig:
    """A complete, reproducible description of one unlearning run."""

    method: str
    hparams: dict[str, Any] = field(default_factory=dict)
    source: Source = Source()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    trust_remote_code: bool = False  # let the model repository's code run (sweeps never do)
    reference: str | None = None  # a RetainReference JSON computed once (sweeps share one)

    def __post_init__(self) -> None:
        method = get_method(self.method)
        method.make_hparams(self.hparams)  # fail at construction, not mid-run
        method.check_lora(self.source.lora_r)
        check_method(self.source.benchmark, self.method, method.views)


def job_to_dict(job: JobConfig) -> dict:
    """The job as plain JSON/YAML-safe values (tuples as lists); job_from_dict inverts it."""
    return to_plain(job)


def job_from_dict(d: dict) -> JobConfig:
    """A JobConfig from a dict as job_to_dict writes it (or a YAML file holds it): nested train,
    eval and model mappings; unknown keys are rejected, omitted ones take the fields' defaults."""
    return from_plain(JobConfig, d, "job")


@dataclass
class JobResult:
    before: dict[str, float] | None
    after: dict[str, float]
    train: TrainResult
    per_sample: dict
    epochs: list[dict] = field(default_factory=list)  # metrics after each evaluated epoch
    model: torch.nn.Module | None = None
    tokenizer: Any = None


def get_reference(
    setup: Setup,
    tok,
    cfg: EvalConfig,
    device: torch.device,
    data: EvalData | None = None,
) -> Reference:
    """The retain model's per-sample reference: from open-unlearning logs, the cache, or computed
    once (and cached) from the retain model; `data`: the evaluation sets, if already loaded."""
    data = eval_data(setup) if data is None else data
    suite = setup.suite
    if setup.retain_logs:  # benchmarks.resolve accepts logs only for a suite that reads them
        return suite.reference_from_logs(setup, data)
    if setup.reference_cache is not None and setup.reference_cache.is_file():
        return suite.load_reference(setup.reference_cache, setup)
    model = load_model(ModelConfig(setup.retain_model), device)
    model.eval()
    no_generation = dataclasses.replace(cfg, generate=False)  # the reference needs no generations
    ref = suite.reference_from(suite.per_sample(model, tok, setup, data, no_generation), setup)
    if setup.reference_cache is not None:
        write_json(setup.reference_cache, ref.to_json())
    return ref


@dataclass(frozen=True)
class Context:
    """What a job reads besides the model: built once per process and reused across sweep trials."""

    setup: Setup
    model: ModelConfig  # the model the job trains (the source's target)
    tok: Any
    data: EvalData
    reference: Reference
    forget: list[dict]
    retain: list[dict]


@functools.lru_cache(maxsize=2)
def _context(
    source: Source,
    trust_remote_code: bool,
    reference_path: str | None,
    eval_cfg: EvalConfig,
    seed: int,
    views: tuple[str, ...],
    device: torch.device,
) -> Context:
    setup = source.resolve()  # the one place a source is resolved (and built-in models built)
    model = source.target(setup, trust_remote_code)
    tok = load_tokenizer(model.path, model.trust_remote_code)
    evaluation = eval_data(setup)
    if reference_path:  # a JSON that get_reference (or a sweep) wrote
        reference = setup.suite.load_reference(Path(reference_path), setup)
    else:
        reference = get_reference(setup, tok, eval_cfg, device, evaluation)
    setup.suite.check_reference(reference, evaluation)
    forget, retain = setup.suite.training(setup, tok, views, seed, model, device)
    if not forget:
        raise UserError(f"split {setup.split} has no forget rows")
    return Context(setup, model, tok, evaluation, reference, forget, retain)


def job_context(job: JobConfig, views: tuple[str, ...], device: torch.device) -> Context:
    """The job's context, cached per process (sweep trials in a reused worker share it)."""
    return _context(
        job.source, job.trust_remote_code, job.reference, job.eval, job.train.seed, views, device
    )


def run_job(
    job: JobConfig,
    eval_before: bool = True,
    eval_every: int = 0,
    device: torch.device | None = None,
    on_epoch: Callable[[int, dict, LoopState], None] | None = None,
    resume: LoopState | None = None,
    progress: bool = False,
    on_loss: LossHook | None = None,
    on_step: StepCallback | None = None,
    accelerator: Accelerator | None = None,
    strategy: str = "ddp",
) -> JobResult:
    """Evaluate, unlearn, evaluate. With eval_every = k > 0 the model is evaluated after every k-th
    epoch and the last; `on_epoch(epoch, metrics, state)` then sees each evaluation with the
    resumable loop state, and the last one is `after`. `resume` continues an interrupted run;
    `on_loss` sees every loss (train.LossHook), `on_step` every optimizer step's log.

    With an `accelerator` of several processes every rank runs this: each trains on its shard of
    the forget set (train.epoch_batches) with its own reference model (sharded too under
    `strategy` fsdp), and each evaluates the whole split, so every rank returns the same metrics.
    Not sharded: an FSDP forward is a collective that every rank must enter equally often, and
    generation's lengths differ between shards."""
    job.source.check_paths()  # before any built-in benchmark is built
    method = get_method(job.method)
    hp = method.make_hparams(job.hparams)
    if accelerator is not None:
        device = accelerator.device
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    check_liger(job.train.liger, device)  # before the model loads
    ctx = job_context(job, method.views, device)
    model = load_model(ctx.model, device)
    lora = ctx.model.lora_r > 0  # the reference is then the model with its adapters off
    ref_model = frozen_reference(model, lora) if method.needs_reference(hp) else None
    if strategy == "fsdp" and ref_model is not None and not lora:
        ref_model = distributed.shard(ref_model)

    def evaluate(m: torch.nn.Module) -> tuple[dict, dict]:
        m.eval()
        suite = ctx.setup.suite
        ps = suite.per_sample(m, ctx.tok, ctx.setup, ctx.data, job.eval, progress=progress)
        return suite.aggregate(ps, ctx.reference), ps

    before = evaluate(model)[0] if eval_before and resume is None else None
    epochs: list[dict] = []
    last: list[tuple[dict, dict]] = []

    def epoch_end(epoch: int, m: torch.nn.Module, state: LoopState) -> None:
        if epoch % eval_every and not state.final:
            return
        metrics, ps = evaluate(m)
        last[:] = [(metrics, ps)]
        epochs.append({"epoch": epoch, **metrics})
        if on_epoch is not None:
            on_epoch(epoch, metrics, state)

    result = unlearn(
        model,
        method,
        hp,
        job.train,
        ctx.forget,
        ctx.retain,
        ctx.tok.pad_token_id,
        ref_model=ref_model,
        on_epoch_end=epoch_end if eval_every else None,
        progress=progress,
        accelerator=accelerator,
        resume=resume,
        on_loss=on_loss,
        on_step=on_step,
        strategy=strategy,
    )
    after, ps = last[0] if last else evaluate(model)
    return JobResult(before, after, result, ps, epochs, model, ctx.tok)


def evaluate_model(
    source: Source,
    cfg: EvalConfig,
    trust_remote_code: bool = False,
    device: torch.device | None = None,
) -> tuple[dict[str, float], dict]:
    """Aggregate metrics and per-sample values of a saved model (`source.model`) on one
    benchmark split."""
    assert source.model is not None, "evaluate_model evaluates a given model"
    source.check_paths()
    setup = source.resolve()
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tok = load_tokenizer(source.model, trust_remote_code)
    data = eval_data(setup)
    reference = get_reference(setup, tok, cfg, device, data)
    model = load_model(ModelConfig(source.model, trust_remote_code=trust_remote_code), device)
    model.eval()
    ps = setup.suite.per_sample(model, tok, setup, data, cfg, progress=True)
    return setup.suite.aggregate(ps, reference), ps


def job_record(job: JobConfig, res: JobResult) -> dict:
    """Everything needed to reproduce and compare a run, as plain JSON."""
    t = res.train
    return {
        "job": job_to_dict(job),
        "train": {
            "optimizer_steps": t.optimizer_steps,
            "effective_batch": t.effective_batch,
            "world_size": t.world_size,
            "seed": t.seed,
            "epochs": t.epochs,
            "wall_time_s": t.wall_time_s,
            "logs": t.logs,
        },
        "before": res.before,
        "after": res.after,
        "epochs": res.epochs,
        "per_sample": to_jsonable(res.per_sample),
    }


def save_job(out: Path, job: JobConfig, res: JobResult) -> None:
    """The unlearned model (merged if LoRA), its tokenizer, and metrics.json."""
    out.mkdir(parents=True, exist_ok=True)
    model = res.model
    if job.source.lora_r > 0:
        model = model.merge_and_unload()
    save_model(model, out)  # GRUN's edit too, which save_pretrained alone would lose at load
    res.tokenizer.save_pretrained(out)
    write_json(out / "metrics.json", job_record(job, res))
