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

from unlearn_core import doc_eval
from unlearn_core.benchmarks import Setup, check_method, eval_data, get_benchmark, write_json
from unlearn_core.config import from_plain, to_plain
from unlearn_core.data import documents
from unlearn_core.data.format import PromptFormat
from unlearn_core.data.tofu import load_config, split_configs
from unlearn_core.data.views import build_views
from unlearn_core.doc_eval import DocEvalData, DocReference
from unlearn_core.errors import UserError
from unlearn_core.evaluate import EvalConfig
from unlearn_core.methods import altpo, get_method
from unlearn_core.metrics import privacy
from unlearn_core.metrics.open_unlearning import read_tofu_eval, split_truth_ratio
from unlearn_core.models import ModelConfig, frozen_reference, load_model, load_tokenizer
from unlearn_core.source import Source
from unlearn_core.tofu_eval import (
    RetainReference,
    TofuEvalData,
    aggregate,
    per_sample,
    reference_from,
    to_jsonable,
)
from unlearn_core.train import LoopState, LossHook, TrainConfig, TrainResult, unlearn

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
        get_method(self.method).make_hparams(self.hparams)  # fail at construction, not mid-run
        check_method(self.source.benchmark, self.method, get_method(self.method).views)


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


Reference = RetainReference | DocReference


def per_sample_any(
    model: torch.nn.Module, tok, setup: Setup, data, cfg: EvalConfig, progress: bool = False
) -> dict:
    """One evaluation pass of the benchmark's suite."""
    if setup.family == "tofu":
        return per_sample(model, tok, setup.fmt, data, cfg, progress=progress)
    return doc_eval.per_sample(model, tok, data, cfg)


def aggregate_any(ps: dict, setup: Setup, reference: Reference | None) -> dict[str, float]:
    if setup.family == "tofu":
        return aggregate(ps, reference)
    return doc_eval.aggregate(ps, setup.family, reference)


def load_reference(setup: Setup, path: Path) -> Reference:
    """A reference JSON written by get_reference (or a sweep), checked against the setup."""
    if setup.family == "tofu":
        return RetainReference.load(path, setup.split)
    return DocReference.load(path, setup.benchmark, setup.split)


def _reference_from_logs(setup: Setup, data) -> Reference:
    """The reference from an open-unlearning eval log: TOFU_EVAL.json or MUSE_EVAL.json."""
    if setup.family != "tofu":
        return doc_eval.reference_from_muse_log(
            setup.retain_logs, setup.benchmark, setup.split, doc_eval.n_forget(data)
        )
    values = read_tofu_eval(setup.retain_logs)
    if "mia_min_k_forget" not in values:
        raise UserError(f"retain logs {setup.retain_logs} have no mia_min_k (needed by privleak)")
    auc = privacy.auc(values["mia_min_k_forget"], values["mia_min_k_holdout"])
    return RetainReference(setup.split, split_truth_ratio(values, "forget"), auc)


def get_reference(
    setup: Setup,
    tok,
    cfg: EvalConfig,
    device: torch.device,
    data: TofuEvalData | DocEvalData | None = None,
) -> Reference:
    """The retain model's per-sample reference: from open-unlearning logs, the cache, or computed
    once (and cached) from the retain model; `data`: the evaluation sets, if already loaded."""
    data = eval_data(setup) if data is None else data
    if setup.retain_logs:
        return _reference_from_logs(setup, data)
    if setup.reference_cache is not None and setup.reference_cache.is_file():
        return load_reference(setup, setup.reference_cache)
    model = load_model(ModelConfig(setup.retain_model), device)
    model.eval()
    no_generation = dataclasses.replace(cfg, generate=False)  # the reference needs no generations
    ps = per_sample_any(model, tok, setup, data, no_generation)
    if setup.family == "tofu":
        ref = reference_from(ps, setup.split)
    else:
        ref = doc_eval.reference_from(ps, setup.family, setup.benchmark, setup.split)
    if setup.reference_cache is not None:
        write_json(setup.reference_cache, ref.to_json())
    return ref


def training_examples(
    setup: Setup, tok, views: tuple[str, ...], seed: int, model: ModelConfig, device: torch.device
) -> tuple[list[dict], list[dict]]:
    """Encoded forget/retain views; forget rows carry AltPO alternates when a view needs them.
    Document benchmarks: chunks of the forget and retain documents (`documents.chunk`)."""
    if setup.family != "tofu":
        forget_pair, retain_pairs = documents.TRAINING[setup.family]
        size = get_benchmark(setup.benchmark).params.chunk_tokens

        def chunks(pairs: list) -> list[dict]:
            return documents.chunk(tok, documents.texts(setup.family, setup.data, pairs), size)

        forget, retain = chunks([forget_pair]), chunks(list(retain_pairs))
        return [{"forget": e} for e in forget], [{"retain": e} for e in retain]
    c = split_configs(setup.split)
    forget_rows = load_config(setup.data, c["forget"])
    retain_rows = load_config(setup.data, c["retain"])
    if "forget_alt" in views:
        forget_rows = list(
            alternates(
                setup.benchmark,
                setup.split,
                setup.data,
                setup.fmt,
                _plain_model(model),
                seed,
                device,
            )
        )
    return build_views(tok, setup.fmt, forget_rows, retain_rows, views, seed)


def _plain_model(cfg: ModelConfig) -> ModelConfig:
    """The model without LoRA (adapters start as the identity), so LoRA variants share a cache."""
    return ModelConfig(cfg.path, cfg.dtype, cfg.attn_implementation, cfg.trust_remote_code)


@functools.cache
def alternates(
    benchmark: str,
    split: str,
    data: str,
    fmt: PromptFormat,
    model: ModelConfig,
    seed: int,
    device: torch.device,
) -> tuple[dict, ...]:
    """AltPO's forget rows with an `alternate` answer sampled once from the target model, cached
    per process so sweep trials reuse them. Built-in tiny models answer the plain question; real
    (instruction-tuned) targets are asked to rewrite the answer (altpo.make_alternates)."""
    rows = load_config(data, split_configs(split)["forget"])
    tok = load_tokenizer(model.path, model.trust_remote_code)
    target = load_model(model, device)
    instruct = not get_benchmark(benchmark).builtin
    out = altpo.make_alternates(target, tok, fmt, rows, seed=seed, instruct=instruct)
    del target
    return tuple(out)


@dataclass(frozen=True)
class Context:
    """What a job reads besides the model: built once per process and reused across sweep trials."""

    setup: Setup
    model: ModelConfig  # the model the job trains (the source's target)
    tok: Any
    data: TofuEvalData | DocEvalData
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
    if reference_path:
        reference = load_reference(setup, Path(reference_path))
    else:
        reference = get_reference(setup, tok, eval_cfg, device, evaluation)
    if setup.family == "tofu" and len(reference.forget_truth_ratio) != len(evaluation.forget):
        raise UserError(
            f"the retain reference has {len(reference.forget_truth_ratio)} forget "
            f"samples but {setup.split} has {len(evaluation.forget)}: one for another split?"
        )
    forget, retain = training_examples(setup, tok, views, seed, model, device)
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
) -> JobResult:
    """Evaluate, unlearn, evaluate. With eval_every = k > 0 the model is evaluated after every k-th
    epoch and the last; `on_epoch(epoch, metrics, state)` then sees each evaluation with the
    resumable loop state, and the last one is `after`. `resume` continues an interrupted run;
    `on_loss` sees every loss (train.LossHook)."""
    job.source.check_paths()  # before any built-in benchmark is built
    method = get_method(job.method)
    hp = method.make_hparams(job.hparams)
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ctx = job_context(job, method.views, device)
    model = load_model(ctx.model, device)
    ref_model = frozen_reference(model) if method.needs_reference(hp) else None

    def evaluate(m: torch.nn.Module) -> tuple[dict, dict]:
        m.eval()
        ps = per_sample_any(m, ctx.tok, ctx.setup, ctx.data, job.eval, progress=progress)
        return aggregate_any(ps, ctx.setup, ctx.reference), ps

    before = evaluate(model)[0] if eval_before and resume is None else None
    epochs: list[dict] = []
    last: list[tuple[dict, dict]] = []

    def epoch_end(epoch: int, m: torch.nn.Module, state: LoopState) -> None:
        if epoch % eval_every and epoch != job.train.last_epoch:
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
        resume=resume,
        on_loss=on_loss,
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
    ps = per_sample_any(model, tok, setup, data, cfg, progress=True)
    return aggregate_any(ps, setup, reference), ps


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
    model.save_pretrained(out)
    res.tokenizer.save_pretrained(out)
    write_json(out / "metrics.json", job_record(job, res))
