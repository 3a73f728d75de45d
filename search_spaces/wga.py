"""Search space for WGA: optimiser knobs, the token-weight exponent beta and the forget/retain
weights."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, SpaceOptions, suggest, suggest_optimizer


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts) | {
        # WGA.yaml 1; widened to 0.1..5 (0 would be plain gradient ascent)
        "beta": suggest(trial, "beta", Range(0.1, 5.0, log=True), opts),
        # WGA.yaml 1; a narrow band, the ratio to alpha carries the trade-off
        "gamma": suggest(trial, "gamma", Range(0.5, 2.0), opts),
        # WGA.yaml 1; widened both ways as open-unlearning's {1, 2, 5}
        "alpha": suggest(trial, "alpha", Range(0.1, 10.0, log=True), opts),
    }
