"""SweepConfig: every option of a sweep in one frozen dataclass; YAML files map onto it 1:1
(safe loading, unknown keys rejected), and the resolved config is saved with the experiment."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from search_spaces import SPACES, held, reference_point
from search_spaces._common import BATCH_KEYS, PRESETS, Ref, SpaceOptions, parse_range
from sweeps.objectives import DEFAULTS, check_family, get_objectives
from unlearn_core import builtin, safe_yaml
from unlearn_core.benchmarks import BENCHMARKS, check_method, get_benchmark
from unlearn_core.config import from_plain
from unlearn_core.errors import UserError
from unlearn_core.evaluate import EvalConfig
from unlearn_core.job import JobConfig
from unlearn_core.methods import get_method
from unlearn_core.plan import STRATEGIES
from unlearn_core.source import PROMPT_KEYS, SOURCE_KEYS, Source
from unlearn_core.steps import ACCOUNTINGS
from unlearn_core.train import PRECISIONS, TrainConfig

SAMPLERS = ("tpe", "gp", "nsga2", "qmc", "random", "grid")
LOGGERS = ("wandb", "mlflow")  # --log-to: the package each needs is its name (an optional extra)


@dataclass(frozen=True)
class SweepConfig:
    method: str
    source: Source = Source()
    trials: int = 32  # trials per method (the first runs the method's reference defaults)
    sampler: str = "tpe"  # tpe, gp, nsga2: exploitation; qmc, random: exploration; grid: 27 points
    seed: int = 0  # of the sampler and the first training seed
    objectives: tuple[str, ...] | None = None  # None: the benchmark family's DEFAULTS
    preset: str = "auto"  # auto: tiny for built-in benchmarks, llm otherwise
    space: dict[str, str] = field(default_factory=dict)  # name -> "low:high[:log|:int]"
    fixed: dict[str, Any] = field(default_factory=dict)  # name -> value, not searched
    # per-device batch of every trial; None: the reference point's (8; MUSE on real models 4)
    batch_size: int | None = None
    # gradient accumulation steps (effective batch = batch_size x grad_accum); None: the
    # reference point's (4; MUSE on real models 8)
    grad_accum: int | None = None
    # decoder layers of the target model (layer hyperparameters are fractions of its depth);
    # None: read from the model's config
    n_layers: int | None = None
    # how every trial's micro-batches make optimizer steps: unlearn-sweep or open-unlearning
    # (HF Trainer's, to match its step counts); None: TrainConfig's (unlearn-sweep)
    step_accounting: str | None = None
    eval_every: int = 1  # evaluate (and report, checkpoint) every N epochs; the last always
    # also report training loss, learning rate, tokens/s and peak memory every N optimizer steps
    # between evaluations (to Ray's trial logs and TensorBoard); 0: at evaluations only
    report_every_steps: int = 0
    # sequences per forward pass of every evaluation (lower it when a trial's evaluation runs out
    # of memory; the metrics do not depend on it); None: EvalConfig's batch_size (64)
    eval_batch_size: int | None = None
    # every trial's weights and compute: bf16-mixed, bf16 or fp32 (TrainConfig.precision);
    # None: TrainConfig's auto (bf16-mixed on a GPU with bf16, fp32 elsewhere)
    precision: str | None = None
    gradient_checkpointing: bool = False  # every trial recomputes activations in the backward
    compile: bool = False  # every trial torch.compiles the model's forward while it trains
    liger: bool = False  # every trial runs liger-kernel's fused layer kernels (CUDA, `liger` extra)
    utility_floor: float = 0.5  # stop trials below this fraction of the target's utility; 0: off
    floor_patience: int = 1  # evaluations in a row below the floor before a trial is stopped
    seeds: int = 1  # seeds per configuration, reported as mean and std
    cpus_per_trial: float = 1.0  # CPUs Ray reserves per trial
    # GPUs Ray reserves per trial: a fraction of one, one, or k >= 2 (a whole number): then the
    # trial runs as a Ray Train TorchTrainer of k workers of one GPU each
    gpus_per_trial: float = 0.0
    # Ray Train workers per trial on a CPU-only cluster (gloo), each with cpus_per_trial CPUs;
    # 1: the trial runs in Tune's own process, as with one GPU
    workers_per_trial: int = 1
    # how a trial of several workers splits: ddp (a replica per worker, gradients averaged) or
    # fsdp (parameters, gradients and optimizer state sharded over the workers, torch FSDP2)
    strategy: str = "ddp"
    max_concurrent: int = 0  # trials at once, across the methods; 0: as many as the cluster fits
    address: str | None = None  # an existing Ray cluster ("auto" or host:port)
    storage: str | None = None  # Ray storage for trial checkpoints: a path or pyarrow URI
    max_failures: int = 2  # retries of a crashed trial from its last checkpoint; -1: no limit
    keep_checkpoints: int = 2  # checkpoints kept per trial
    # at the sweep's end, rerun the K front points closest to the knee of each method on 3 fresh
    # seeds (`unlearn-sweep confirm DIR --top K`); 0: off
    confirm: int = 0
    # an earlier experiment folder: each method's Pareto front there is evaluated first (after
    # the reference defaults, within the trials); None: none
    warm_start: str | None = None
    # Ray's dashboard on the private cluster, at http://127.0.0.1:8265 (needs ray[default])
    dashboard: bool = False
    # also send every result to wandb, mlflow or both (wandb,mlflow) through Ray's logger
    # callbacks (WANDB_MODE=offline works; mlflow writes to MLFLOW_TRACKING_URI, else the
    # experiment's mlruns/); None: the results log and TensorBoard only
    log_to: str | None = None

    def __post_init__(self) -> None:
        benchmark = self.source.benchmark
        method = get_method(self.method)
        check_method(benchmark, self.method, method.views)
        method.check_lora(self.source.lora_r)
        family = get_benchmark(benchmark).family
        if self.objectives is None:
            object.__setattr__(self, "objectives", DEFAULTS[family])
        get_objectives(list(self.objectives))
        check_family(self.objectives, family, benchmark)
        if self.sampler not in SAMPLERS:
            raise UserError(f"unknown sampler {self.sampler!r}; accepted: {', '.join(SAMPLERS)}")
        for name in (
            "trials",
            "eval_every",
            "seeds",
            "keep_checkpoints",
            "floor_patience",
        ):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.eval_batch_size is not None and self.eval_batch_size < 1:
            raise UserError(f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        if self.report_every_steps < 0:
            raise UserError(
                f"report_every_steps must be >= 0 (0: at evaluations only), "
                f"got {self.report_every_steps}"
            )
        if self.confirm < 0:
            raise UserError(f"confirm must be >= 0 (0: off), got {self.confirm}")
        if self.max_concurrent < 0 or self.max_failures < -1:
            raise UserError(
                "max_concurrent must be >= 0 (0: as many as fit) and max_failures "
                ">= -1 (-1: retry without limit)"
            )
        if self.cpus_per_trial <= 0 or self.gpus_per_trial < 0:
            raise UserError("cpus_per_trial must be > 0 and gpus_per_trial >= 0")
        self.check_workers()
        if not 0 <= self.utility_floor < 1:
            raise UserError(f"utility_floor is a fraction in [0, 1), got {self.utility_floor}")
        if self.preset != "auto" and self.preset not in PRESETS:
            raise UserError(f"unknown preset {self.preset!r}; accepted: auto, {', '.join(PRESETS)}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise UserError(
                f"unknown precision {self.precision!r}; accepted: {', '.join(PRECISIONS)}"
            )
        if self.step_accounting is not None and self.step_accounting not in ACCOUNTINGS:
            raise UserError(
                f"unknown step_accounting {self.step_accounting!r}; "
                f"accepted: {', '.join(ACCOUNTINGS)}"
            )
        if self.log_to is not None:
            unknown = sorted(set(self.log_to.split(",")) - set(LOGGERS))
            if unknown or not self.log_to:
                raise UserError(
                    f"unknown log_to {self.log_to!r}; accepted: {', '.join(LOGGERS)} or both, "
                    "comma-separated"
                )
        if self.warm_start is not None:  # absolute: the manifest keeps it for resume
            if self.sampler == "grid":
                raise UserError(
                    "warm_start: a grid evaluates its own 27 points; use another sampler"
                )
            object.__setattr__(
                self, "warm_start", str(Path(self.warm_start).expanduser().absolute())
            )
        if self.n_layers is None:  # resolved once; the manifest keeps it for resume and export
            object.__setattr__(self, "n_layers", model_depth(self.source))
        reference = self.reference()  # SpaceOptions checks n_layers
        for name in BATCH_KEYS:
            if getattr(self, name) is None:
                object.__setattr__(self, name, reference[name].value)
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.space_options()  # validates ranges and fixed values against the space

    def workers(self) -> int:
        """Ray Train workers of each trial: k for k >= 2 GPUs, else workers_per_trial."""
        return int(self.gpus_per_trial) if self.gpus_per_trial >= 2 else self.workers_per_trial

    def check_workers(self) -> None:
        if self.strategy not in STRATEGIES:
            raise UserError(
                f"unknown strategy {self.strategy!r}; accepted: {', '.join(STRATEGIES)}"
            )
        if self.workers_per_trial < 1:
            raise UserError(f"workers_per_trial must be >= 1, got {self.workers_per_trial}")
        gpus = self.gpus_per_trial
        if not math.isfinite(gpus):  # before int(gpus) below
            raise UserError(f"gpus_per_trial must be a finite number, got {gpus!r}")
        if gpus > 1 and not float(gpus).is_integer():
            raise UserError(
                f"gpus_per_trial must be a fraction below 1 or a whole number (>= 0), got {gpus}"
            )
        if gpus >= 2 and self.workers_per_trial not in (1, int(gpus)):
            raise UserError(
                f"--gpus-per-trial {gpus:g} runs {gpus:g} workers of one GPU each; "
                f"--workers-per-trial {self.workers_per_trial} contradicts it (leave it out)"
            )
        if self.strategy == "fsdp" and self.workers() < 2:
            raise UserError(
                "--strategy fsdp shards over workers: give --workers-per-trial 2 or more "
                "(or --gpus-per-trial 2 or more)"
            )

    def resolved_preset(self) -> str:
        if self.preset != "auto":
            return self.preset
        builtin = BENCHMARKS[self.source.benchmark].builtin
        return "tiny" if builtin and self.source.model is None else "llm"

    def space_options(self, check: bool = True) -> SpaceOptions:
        """The space's options. The schedule, warmup, weight decay and (for a loss gamma * forget
        + alpha * retain) gamma are held at the method's reference values unless the user fixes
        another value or gives a range to search (search_spaces.held)."""
        ranges = dict(parse_range(f"{k}={v}") for k, v in self.space.items())
        family = get_benchmark(self.source.benchmark).family
        opts = SpaceOptions(self.resolved_preset(), ranges, dict(self.fixed), self.n_layers, family)
        ref = reference_point(self.method, opts)
        hold = {k: ref[k].value for k in held(self.method) if k not in opts.fixed | opts.ranges}
        opts = dataclasses.replace(opts, fixed=opts.fixed | hold)
        if check:
            check_space(self.method, opts)
        return opts

    def reference(self) -> dict[str, Ref]:
        """The method's cited reference point on this benchmark and model (search_spaces)."""
        return reference_point(self.method, self.space_options(check=False))

    def defaults_point(self) -> dict:
        """The reference point's values the study evaluates first: without the batch (not
        searched) and fixed values, inside a user's narrower ranges."""
        opts = self.space_options()
        point = {k: r.value for k, r in self.reference().items() if k not in BATCH_KEYS}
        for k, r in opts.ranges.items():
            if k in point and isinstance(point[k], int | float):
                v = min(max(point[k], r.low), r.high)
                point[k] = int(round(v)) if r.integer else v
        return {k: v for k, v in point.items() if k not in opts.fixed}


def model_depth(source: Source) -> int | None:
    """Decoder layers of the model a sweep trains: the built-in tiny model's, else the model's
    config's num_hidden_layers (a local folder, or the hub's); None while no model is named."""
    bench = BENCHMARKS[source.benchmark]
    if bench.builtin and source.model is None:
        return builtin.VARIANTS[source.benchmark].model.num_hidden_layers
    name = source.model or bench.target
    if name is None:
        return None  # benchmark 'tofu' without --model: the run refuses it (benchmarks.resolve)
    source.check_paths()
    from transformers import AutoConfig

    try:
        return int(AutoConfig.from_pretrained(name).num_hidden_layers)
    except (OSError, ValueError, AttributeError, TypeError) as e:
        raise UserError(
            f"cannot read the number of layers of {name!r} ({type(e).__name__}); give --n-layers"
        ) from None


def make_job(s: SweepConfig, params: dict, seed: int, reference: str | None = None) -> JobConfig:
    """The JobConfig of one configuration and seed: what a trial runs and what an export holds."""
    # rows from before the schedule was searched hold none: TrainConfig's default ran; likewise
    # the step accounting unless the sweep sets it
    optional = {"schedule": params["schedule"]} if "schedule" in params else {}
    if s.step_accounting is not None:
        optional["step_accounting"] = s.step_accounting
    if s.precision is not None:
        optional["precision"] = s.precision
    train = TrainConfig(
        lr=params["lr"],
        epochs=int(params["epochs"]),
        batch_size=s.batch_size,
        grad_accum=s.grad_accum,
        warmup_epochs=params["warmup_epochs"],
        weight_decay=params["weight_decay"],
        seed=seed,
        gradient_checkpointing=s.gradient_checkpointing,
        compile=s.compile,
        liger=s.liger,
        **optional,
    )
    hp = {k: v for k, v in params.items() if k in hparam_names(s.method)}
    given = {} if s.eval_batch_size is None else {"batch_size": s.eval_batch_size}
    return JobConfig(s.method, hp, s.source, train, EvalConfig(**given), reference=reference)


def check_space(method: str, opts: SpaceOptions) -> None:
    """Run the space once on a fixed trial to reject unknown names and values of the wrong type."""
    import optuna

    if method not in SPACES:
        raise UserError(
            f"method {method!r} has no search space yet; sweepable: {', '.join(SPACES)}"
        )
    space = SPACES[method]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize"], sampler=optuna.samplers.RandomSampler(0))
    trial = study.ask()
    params = space(trial, SpaceOptions(opts.preset))
    names = set(params) | set(trial.params)
    for name in list(opts.ranges) + list(opts.fixed):
        if name not in names:
            raise UserError(
                f"{method} searches no parameter {name!r}; its space has: "
                f"{', '.join(sorted(names))}"
            )
    for name, value in opts.fixed.items():
        default = params[name]
        if isinstance(default, int) and not isinstance(default, bool):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
            )
        else:
            ok = isinstance(value, type(default))
        if not ok:
            kind = {"int": "an integer", "float": "a number"}.get(
                type(default).__name__, f"a {type(default).__name__}"
            )
            raise UserError(f"--fix {name}={value!r}: expected {kind}")
    get_method(method).make_hparams({k: v for k, v in params.items() if k in hparam_names(method)})


def hparam_names(method: str) -> set[str]:
    return {f.name for f in dataclasses.fields(get_method(method).hparams)}


def read_yaml(path: str, missing: str) -> object:
    """A YAML file, safe-loaded (no Python objects); `missing` is the message if it is absent."""
    return safe_yaml.read(path, missing)


def load_yaml_keys() -> set[str]:
    """A sweep file's keys: the sweep command's flags (SweepConfig's fields, the Source's, the
    prompt's three parts, name and output), with `methods` for a list of methods."""
    known = {f.name for f in dataclasses.fields(SweepConfig)} - {"source"}
    return known | {*SOURCE_KEYS, *PROMPT_KEYS, "methods", "name", "output"}


def load_yaml(path: str) -> dict:
    """A sweep file: a safe-loaded mapping of load_yaml_keys()."""
    data = read_yaml(path, f"sweep file {path!r} does not exist")
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a mapping of sweep options")
    known = load_yaml_keys()
    unknown = sorted(set(data) - known)
    if unknown:
        raise UserError(f"{path}: unknown key {unknown[0]!r}; accepted: {', '.join(sorted(known))}")
    for key in ("method", "methods"):  # one name, a comma-separated list, or a list of names
        value = data.get(key, "")
        if not isinstance(value, str) and not (
            isinstance(value, list) and value and all(isinstance(v, str) for v in value)
        ):
            raise UserError(f"{path}: {key} must be a method name or a list of them, got {value!r}")
    data = safe_yaml.check_fields(data, SweepConfig, str(path), {"name": str, "output": str})
    return safe_yaml.check_fields(data, Source, str(path), dict.fromkeys(PROMPT_KEYS, str | None))


def sweep_from_dict(d: dict, where: str = "sweep") -> SweepConfig:
    """A SweepConfig from `to_dict`'s output (an experiment manifest holds one per method)."""
    return from_plain(SweepConfig, d, where)


def to_dict(cfg: SweepConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d["objectives"] = list(cfg.objectives)
    return d
