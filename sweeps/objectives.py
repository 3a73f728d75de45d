"""Objectives a sweep can optimise, one record each: the key reported and given to the study as its
metric name, the direction, the metric it is derived from, its hypervolume reference and how it
is named. Sweeps and analysis read only these. forget_quality is a p-value spanning hundreds of
orders of magnitude, so it is optimised as log10."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from unlearn_core.errors import UserError

FQ_FLOOR = 1e-300  # p-values below this (complete separation is ~1e-239 at 400 samples) clip here
# Hypervolume reference of log10 forget_quality, fixed so numbers compare across methods, samplers
# and runs; lower forget qualities are clipped to it and add no area. Why -20: on TOFU forget10
# the fine-tuned target itself sits at 1e-21..1e-25 (open-unlearning docs/repro.md), so area
# starts about where a model is measurably closer to the retain model than the target is, while
# over-unlearned models at 1e-100..1e-239 (gradient ascent) cannot buy area with differences
# between useless p-values. Targets above the floor: TOFU forget01 (1e-3), forget05 (1e-13),
# tiny-tofu-small forget10 (1.8e-6).
LOG10_FQ_FLOOR = -20.0


@dataclass(frozen=True)
class Objective:
    key: str  # the reported key
    mode: str  # "max" | "min"
    needs: str  # the metric it is computed from
    fn: Callable[[float], float]
    description: str
    # Hypervolume reference (the worst value), fixed for the same reason as LOG10_FQ_FLOOR. Scores
    # in [0, 1] (ROUGE-L, model_utility, extraction strength, truth ratio) take their worst end:
    # 1 for a minimised score, 0 for a maximised one. |privleak| and DUSK's retain deviation (in
    # %, 0 ideal) are unbounded above: 100, worse values clipped to it (a model leaking like the
    # target, privleak ~ -100, adds no area).
    reference: float
    families: tuple[str, ...] = ("tofu",)  # benchmark families that report `needs`
    # (in a title, in a sentence, abbreviated: progress line and hypervolume axis); None: the key
    names: tuple[str, str, str] | None = None
    axis: str | None = None  # the plots' axis label; None: the key and its direction
    log_axis: bool = False  # plotted as 10**value on a log axis (log10 FQ: the p-value itself)

    def name(self, i: int) -> str:
        return self.key if self.names is None else self.names[i]


def _log10(p: float) -> float:
    return math.log10(max(p, FQ_FLOOR))


OBJECTIVES = {
    "forget_quality": Objective(
        "log10_forget_quality",
        "max",
        "forget_quality",
        _log10,
        "log10 of the KS p-value against the retain model (higher: closer)",
        LOG10_FQ_FLOOR,
        names=("forget quality", "log10 forget quality", "log10 FQ"),
        axis="forget quality (KS p-value vs retain; log scale, higher = better forgotten)",
        log_axis=True,
    ),
    "model_utility": Objective(
        "model_utility",
        "max",
        "model_utility",
        float,
        "TOFU: harmonic mean of 9 retain/real-authors/world-facts numbers; "
        "MUSE: retain knowmem; DUSK: harmonic mean of shared and "
        "retain-specific QA",
        0.0,
        ("tofu", "muse", "dusk"),
        names=("model utility", "model utility", "utility"),
    ),
    "privleak": Objective(
        "abs_privleak",
        "min",
        "privleak",
        abs,
        "|privleak|: distance of the MIA AUC gap from the retain model's (0 ideal)",
        100.0,
        ("tofu", "muse", "dusk"),
    ),
    "forget_rouge": Objective(
        "forget_Q_A_ROUGE",
        "min",
        "forget_Q_A_ROUGE",
        float,
        "ROUGE-L recall on forget questions (lower: more forgotten)",
        1.0,
    ),
    "extraction_strength": Objective(
        "extraction_strength",
        "min",
        "extraction_strength",
        float,
        "extraction strength on the forget set (lower: less extractable)",
        1.0,
        ("tofu", "muse"),
    ),
    "forget_truth_ratio": Objective(
        "forget_truth_ratio",
        "max",
        "forget_truth_ratio",
        float,
        "mean min(TR, 1/TR) on the forget set (higher: less certain)",
        0.0,
    ),
    "forget_verbmem": Objective(
        "forget_verbmem_ROUGE",
        "min",
        "forget_verbmem_ROUGE",
        float,
        "ROUGE-L F1 of forget-passage continuations (MUSE verbmem, DUSK verbatim)",
        1.0,
        ("muse", "dusk"),
    ),
    "forget_knowmem": Objective(
        "forget_knowmem_ROUGE",
        "min",
        "forget_knowmem_ROUGE",
        float,
        "MUSE knowmem on forget QA (ROUGE-L F1; lower: forgotten)",
        1.0,
        ("muse",),
    ),
    "retain_knowmem": Objective(
        "retain_knowmem_ROUGE",
        "max",
        "retain_knowmem_ROUGE",
        float,
        "MUSE knowmem on retain QA (ROUGE-L F1; higher: kept)",
        0.0,
        ("muse",),
    ),
    "forget_specific": Objective(
        "forget_specific_ROUGE",
        "min",
        "forget_specific_ROUGE",
        float,
        "DUSK forget-specific QA (ROUGE-L recall; lower: forgotten)",
        1.0,
        ("dusk",),
    ),
    "shared_knowledge": Objective(
        "shared_ROUGE",
        "max",
        "shared_ROUGE",
        float,
        "DUSK shared-knowledge QA (ROUGE-L recall; higher: kept)",
        0.0,
        ("dusk",),
    ),
    "retain_specific": Objective(
        "retain_specific_ROUGE",
        "max",
        "retain_specific_ROUGE",
        float,
        "DUSK retain-specific QA (ROUGE-L recall; higher: kept)",
        0.0,
        ("dusk",),
    ),
    "retain_deviation": Objective(
        "retain_deviation",
        "min",
        "retain_deviation",
        float,
        "DUSK retain deviation, % (0 ideal)",
        100.0,
        ("dusk",),
    ),
}
BY_KEY = {o.key: o for o in OBJECTIVES.values()}  # reported key -> its record
DEFAULTS = {
    "tofu": ("forget_quality", "model_utility"),
    "muse": ("forget_verbmem", "model_utility"),
    "dusk": ("forget_specific", "shared_knowledge"),
}
# family -> the objectives its evaluation reports, in OBJECTIVES order
REPORTED = {f: tuple(n for n, o in OBJECTIVES.items() if f in o.families) for f in DEFAULTS}


def check_family(names: tuple[str, ...] | list[str], family: str, benchmark: str) -> None:
    """Each objective must be one the benchmark's evaluation reports."""
    reported = REPORTED[family]
    wrong = [n for n in names if n not in reported]
    if wrong:
        ok = ", ".join(reported)
        raise UserError(f"objective {wrong[0]!r} is not reported by {benchmark}; accepted: {ok}")


def get_objectives(names: tuple[str, ...] | list[str]) -> list[Objective]:
    if not 1 <= len(names) <= 3:
        raise UserError(f"give 1 to 3 objectives, got {len(names)}")
    unknown = [n for n in names if n not in OBJECTIVES]
    if unknown:
        raise UserError(f"unknown objective {unknown[0]!r}; accepted: {', '.join(OBJECTIVES)}")
    if len(set(names)) != len(names):
        raise UserError(f"objectives repeat: {', '.join(names)}")
    return [OBJECTIVES[n] for n in names]


def objective_values(metrics: dict[str, float], objectives: list[Objective]) -> dict[str, float]:
    """The objective keys for one result; missing or non-finite inputs raise (never invented)."""
    out = {}
    for o in objectives:
        value = metrics.get(o.needs)
        if value is None or not math.isfinite(value):
            raise ValueError(f"metric {o.needs} is {value!r}; cannot compute objective {o.key}")
        out[o.key] = o.fn(value)
    return out
