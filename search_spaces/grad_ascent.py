"""Search space for gradient ascent: the optimiser knobs only (GA has no coefficients)."""

from __future__ import annotations

import optuna

from search_spaces._common import Ref, SpaceOptions, cited, suggest_optimizer
from unlearn_core.methods.grad_ascent import Hparams


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts)


# where each default of the reference point comes from (the values: Hparams)
SOURCES: dict[str, str] = {}  # no coefficients


def reference(opts: SpaceOptions) -> dict[str, Ref]:
    return cited(Hparams(), SOURCES)
