"""Search space for gradient ascent: the optimiser knobs only (GA has no coefficients)."""

from __future__ import annotations

import optuna

from search_spaces._common import SpaceOptions, suggest_optimizer


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts)
