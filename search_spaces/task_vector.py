"""Search space for task-vector negation: optimiser knobs (of the forget fine-tune) and the scale of
the subtracted task vector."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, SpaceOptions, suggest, suggest_optimizer


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts) | {
        # DUSK forget_tv.py alpha 1.0; widened to 0.25..2
        "scale": suggest(trial, "scale", Range(0.25, 2.0, log=True), opts),
    }
