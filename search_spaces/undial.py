"""Search space for UNDIAL: optimiser knobs, the teacher-logit shift beta and the forget/retain
weights."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, SpaceOptions, suggest, suggest_optimizer


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts) | {
        # UNDIAL.yaml 10; open-unlearning README grid {3, 10, 30}; widened to 1..100
        "beta": suggest(trial, "beta", Range(1.0, 100.0, log=True), opts),
        # UNDIAL.yaml 1; a narrow band, the ratio to alpha carries the trade-off
        "gamma": suggest(trial, "gamma", Range(0.5, 2.0), opts),
        # UNDIAL.yaml 0 (no retain term); run.sh grid {1, 2, 5}. Linear so the default 0 is inside
        "alpha": suggest(trial, "alpha", Range(0.0, 5.0), opts),
    }
