"""Search space for GradDiff: optimiser knobs, forget weight gamma and retain weight alpha."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, Ref, SpaceOptions, cited, suggest, suggest_optimizer
from unlearn_core.methods.grad_diff import Hparams


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts) | {
        # open-unlearning community grids: alpha {1, 2, 5}, gamma 1; widened both ways
        "alpha": suggest(trial, "alpha", Range(0.1, 10.0, log=True), opts),
        "gamma": suggest(trial, "gamma", Range(0.1, 2.0, log=True), opts),
    }


# where each default of the reference point comes from (the values: Hparams)
SOURCES = {
    "alpha": "open-unlearning configs/trainer/GradDiff.yaml",
    "gamma": "open-unlearning configs/trainer/GradDiff.yaml",
}


def reference(opts: SpaceOptions) -> dict[str, Ref]:
    return cited(Hparams(), SOURCES)
