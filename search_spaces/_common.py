"""What every space shares: the optimiser knobs, per-benchmark range presets, and user overrides
(`--space lr=1e-6:1e-4:log`, `--fix epochs=5`) applied inside each suggest call."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import optuna

from unlearn_core.errors import UserError


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
    default_lr: float  # the reference point evaluated first in every sweep
    default_epochs: int


PRESETS = {
    # tiny-tofu: 250k-parameter Llama; measured NPO collapse above ~3e-3, no effect below 1e-4
    "tiny": Preset(
        lr=Range(1e-4, 5e-3, log=True),
        epochs=Range(1, 8, integer=True),
        default_lr=1e-3,
        default_epochs=5,
    ),
    # open-unlearning TOFU grids on 1B-8B models: lr {1e-6..5e-5}, 10 epochs default
    "llm": Preset(
        lr=Range(1e-6, 1e-4, log=True),
        epochs=Range(1, 10, integer=True),
        default_lr=1e-5,
        default_epochs=10,
    ),
}


@dataclass(frozen=True)
class SpaceOptions:
    """A preset plus per-parameter overrides: new ranges and fixed values."""

    preset: str = "tiny"
    ranges: dict[str, Range] = field(default_factory=dict)
    fixed: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise UserError(f"unknown preset {self.preset!r}; accepted: {', '.join(PRESETS)}")


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


def suggest_optimizer(trial: optuna.Trial, opts: SpaceOptions, lr: Range | None = None) -> dict:
    """lr (the preset's range unless the method passes its own) and epochs from the preset; warmup
    and weight decay over small standard ranges."""
    p = PRESETS[opts.preset]
    return {
        "lr": suggest(trial, "lr", lr or p.lr, opts),
        "epochs": suggest(trial, "epochs", p.epochs, opts),
        # open-unlearning uses 1 warmup epoch of 10; a fraction of an epoch up to 1
        "warmup_epochs": suggest(trial, "warmup_epochs", Range(0.0, 1.0), opts),
        # open-unlearning TOFU: 0.01; MUSE: 0
        "weight_decay": suggest(trial, "weight_decay", Range(0.0, 0.1), opts),
    }


OPTIMIZER_KEYS = ("lr", "epochs", "warmup_epochs", "weight_decay")


def default_point(preset: str) -> dict:
    """open-unlearning's TOFU optimiser defaults (1 warmup epoch, weight decay 0.01) at the
    preset's learning rate and epochs."""
    p = PRESETS[preset]
    return {
        "lr": p.default_lr,
        "epochs": p.default_epochs,
        "warmup_epochs": 1.0,
        "weight_decay": 0.01,
    }


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
