"""Search space for GradDiff: optimiser knobs, forget weight gamma and retain weight alpha."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, SpaceOptions, suggest, suggest_optimizer


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts) | {
        # open-unlearning community grids: alpha {1, 2, 5}, gamma 1; widened both ways
        "alpha": suggest(trial, "alpha", Range(0.1, 10.0, log=True), opts),
        "gamma": suggest(trial, "gamma", Range(0.1, 2.0, log=True), opts),
    }
