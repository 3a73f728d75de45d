"""What every space shares: the optimiser knobs, per-benchmark range presets, the cited reference
point a sweep evaluates first, and user overrides (`--space lr=1e-6:1e-4:log`, `--fix epochs=5`)
applied inside each suggest call."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import optuna

from unlearn_core.errors import UserError
from unlearn_core.train import SCHEDULES


@dataclass(frozen=True)
class Range:
    low: float
    high: float
    log: bool = False
    integer: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise UserError(f"range bounds must be finite numbers, got {self.low}:{self.high}")
        if self.integer and not (float(self.low).is_integer() and float(self.high).is_integer()):
            raise UserError(
                f"an integer range needs whole-number bounds, got {self.low}:{self.high}"
            )
        if not self.low <= self.high:
            raise UserError(f"empty range: low {self.low} > high {self.high}")
        if self.log and self.low <= 0:
            raise UserError(f"a log-scale range needs a positive low bound, got {self.low}")


@dataclass(frozen=True)
class Preset:
    """Ranges that depend on the model scale: tiny built-in models need ~100x larger learning
    rates than 1B-8B models (open-unlearning sweeps lr 1e-6..1e-4 on those)."""

    lr: Range
    epochs: Range
    n_layers: int  # decoder layers of the models it is for, when the sweep names none


PRESETS = {
    # tiny-tofu: 250k-parameter Llama; measured NPO collapse above ~3e-3, no effect below 1e-4
    "tiny": Preset(
        lr=Range(1e-4, 5e-3, log=True),
        epochs=Range(1, 8, integer=True),
        n_layers=2,  # TinyModelConfig
    ),
    # open-unlearning TOFU grids on 1B-8B models: lr {1e-6..5e-5}, 10 epochs default
    "llm": Preset(
        lr=Range(1e-6, 1e-4, log=True),
        epochs=Range(1, 10, integer=True),
        n_layers=32,  # the 7-8B models of the RMU, GRUN and closer-look papers
    ),
}


@dataclass(frozen=True)
class Ref:
    """One value of a reference point and where it comes from (`unlearn-sweep methods`)."""

    value: int | float | str | tuple[int, ...]
    source: str


TOFU = "open-unlearning configs/experiment/unlearn/tofu/default.yaml"
MUSE = "open-unlearning configs/experiment/unlearn/muse/default.yaml"
DUSK = "DUSK config/dusk.yaml, scripts/baselines.sh"
TINY = "chosen on tiny-tofu (NPO collapses above lr ~3e-3)"

# The optimiser reference on real models per benchmark family, as each benchmark's own setup runs
# it. Batch: per device x accumulation for an effective 32 on one device (MUSE's 4 x 8; DUSK's
# 4 x 4 x 2 GPUs). DUSK: one epoch is about one optimizer step there, so HF's one-epoch warmup is 0.
LLM_OPTIMIZER = {
    "tofu": {
        "lr": Ref(1e-5, TOFU),
        "epochs": Ref(10, TOFU),
        "warmup_epochs": Ref(1.0, TOFU),
        "weight_decay": Ref(0.01, TOFU),
        "schedule": Ref("linear", TOFU),
        "batch_size": Ref(8, "open-unlearning configs/trainer/finetune.yaml"),
        "grad_accum": Ref(4, "open-unlearning configs/trainer/finetune.yaml"),
    },
    "muse": {
        "lr": Ref(1e-5, MUSE),
        "epochs": Ref(10, MUSE),
        "warmup_epochs": Ref(0.0, MUSE),
        "weight_decay": Ref(0.0, MUSE),
        "schedule": Ref("constant", MUSE),
        "batch_size": Ref(4, MUSE),
        "grad_accum": Ref(8, MUSE),
    },
    "dusk": {
        "lr": Ref(1e-5, DUSK),
        "epochs": Ref(5, DUSK),
        "warmup_epochs": Ref(0.0, DUSK),
        "weight_decay": Ref(0.01, DUSK),
        "schedule": Ref("linear", "DUSK forget.py (HF Trainer default)"),
        "batch_size": Ref(4, DUSK),
        "grad_accum": Ref(8, DUSK),
    },
}
# The built-in benchmarks' tiny models: TOFU's setting at the rate and length chosen on tiny-tofu,
# for every family (the tiny defaults were measured with it)
TINY_OPTIMIZER = LLM_OPTIMIZER["tofu"] | {"lr": Ref(1e-3, TINY), "epochs": Ref(5, TINY)}
# what a reference point holds that is not a search-space parameter: the sweep's batch
BATCH_KEYS = ("batch_size", "grad_accum")


@dataclass(frozen=True)
class SpaceOptions:
    """A preset plus per-parameter overrides (new ranges, fixed values), the target model's depth
    (layer hyperparameters are fractions of it) and the benchmark family (the optimiser
    reference)."""

    preset: str = "tiny"
    ranges: dict[str, Range] = field(default_factory=dict)
    fixed: dict[str, object] = field(default_factory=dict)
    n_layers: int | None = None  # the target model's decoder layers; None: the preset's
    family: str = "tofu"

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise UserError(f"unknown preset {self.preset!r}; accepted: {', '.join(PRESETS)}")
        if self.n_layers is not None and self.n_layers < 1:
            raise UserError(f"n_layers must be >= 1, got {self.n_layers}")
        if self.family not in LLM_OPTIMIZER:
            raise UserError(
                f"unknown benchmark family {self.family!r}; accepted: {', '.join(LLM_OPTIMIZER)}"
            )

    @property
    def depth(self) -> int:
        return self.n_layers or PRESETS[self.preset].n_layers


def suggest(trial: optuna.Trial, name: str, default: Range, opts: SpaceOptions) -> object:
    """One parameter: the user's fixed value, else a sample from the (overridden) range."""
    if name in opts.fixed:
        return opts.fixed[name]
    r = opts.ranges.get(name, default)
    if default.integer:
        return trial.suggest_int(name, int(r.low), int(r.high), log=r.log)
    return trial.suggest_float(name, r.low, r.high, log=r.log)


def suggest_choice(
    trial: optuna.Trial, name: str, choices: tuple[int | float | str, ...], opts: SpaceOptions
) -> object:
    """A categorical parameter: a fixed value if the user fixed it, else one of `choices`."""
    if name in opts.fixed:
        return opts.fixed[name]
    if name in opts.ranges:
        raise UserError(
            f"{name} is a choice among {', '.join(map(str, choices))}, not a range; "
            f"fix it to one value instead"
        )
    return trial.suggest_categorical(name, choices)


def suggest_optimizer(
    trial: optuna.Trial,
    opts: SpaceOptions,
    lr: Range | None = None,
    epochs: Range | None = None,
    warmup_epochs: Range | None = None,
) -> dict:
    """lr and epochs from the preset unless the method passes its own, warmup and weight decay
    over small standard ranges, and the schedule."""
    p = PRESETS[opts.preset]
    return {
        "lr": suggest(trial, "lr", lr or p.lr, opts),
        "epochs": suggest(trial, "epochs", epochs or p.epochs, opts),
        # open-unlearning TOFU: 1 warmup epoch of 10; MUSE and GRUN: none; up to 1 epoch
        "warmup_epochs": suggest(trial, "warmup_epochs", warmup_epochs or Range(0.0, 1.0), opts),
        # open-unlearning TOFU: 0.01; MUSE: 0
        "weight_decay": suggest(trial, "weight_decay", Range(0.0, 0.1), opts),
        # open-unlearning TOFU: linear; MUSE, WMDP: constant; #167 proposes cosine. Sweeps fix it
        # to the method's reference schedule unless the user fixes another (SweepConfig)
        "schedule": suggest_choice(trial, "schedule", SCHEDULES, opts),
    }


OPTIMIZER_KEYS = ("lr", "epochs", "warmup_epochs", "weight_decay", "schedule")


def optimizer_reference(opts: SpaceOptions) -> dict[str, Ref]:
    """The optimiser part of every method's reference point, with the sweep's batch."""
    return dict(TINY_OPTIMIZER if opts.preset == "tiny" else LLM_OPTIMIZER[opts.family])


def cited(hp: object, sources: dict[str, str]) -> dict[str, Ref]:
    """Ref(default, source) for each named field of a method's Hparams instance."""
    return {name: Ref(getattr(hp, name), source) for name, source in sources.items()}


def default_point(preset: str, family: str = "tofu") -> dict:
    """The optimiser reference's values (no batch), what every method's reference point starts
    from."""
    ref = optimizer_reference(SpaceOptions(preset, family=family))
    return {k: r.value for k, r in ref.items() if k in OPTIMIZER_KEYS}


def parse_range(text: str) -> tuple[str, Range]:
    """`name=low:high[:log|:int]` -> (name, Range)."""
    name, sep, spec = text.partition("=")
    parts = spec.split(":")
    if not sep or not name or len(parts) not in (2, 3) or parts[2:] not in ([], ["log"], ["int"]):
        raise UserError(f"--space expects NAME=LOW:HIGH[:log|:int], got {text!r}")
    try:
        low, high = float(parts[0]), float(parts[1])
    except ValueError:
        raise UserError(f"--space {text!r}: bounds must be numbers") from None
    return name, Range(low, high, log=parts[2:] == ["log"], integer=parts[2:] == ["int"])
