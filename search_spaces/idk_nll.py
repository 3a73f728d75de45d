"""Search space for IdkNLL (IDK+GD): optimiser knobs, the refusal weight gamma and the retain
weight alpha."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, SpaceOptions, suggest, suggest_optimizer


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts) | {
        # closer-look baselines.sh 1; widened as GradDiff's gamma
        "gamma": suggest(trial, "gamma", Range(0.1, 2.0, log=True), opts),
        # closer-look 1; open-unlearning's IdkNLL checkpoints alpha 2 of {1, 2, 5}; widened
        "alpha": suggest(trial, "alpha", Range(0.1, 10.0, log=True), opts),
    }
