"""Search space for NPO: optimiser knobs, temperature beta and the forget/retain weights."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, Ref, SpaceOptions, cited, suggest, suggest_optimizer
from unlearn_core.methods.npo import Hparams


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts) | {
        # paper default 0.1; open-unlearning AltPO/NPO grids {0.05, 0.1, 0.5}; widened to 1.0
        "beta": suggest(trial, "beta", Range(0.01, 1.0, log=True), opts),
        # open-unlearning grids alpha {1, 2, 5}; widened both ways
        "alpha": suggest(trial, "alpha", Range(0.1, 10.0, log=True), opts),
        "gamma": suggest(trial, "gamma", Range(0.5, 2.0), opts),
    }


# where each default of the reference point comes from (the values: Hparams)
SOURCES = {
    "beta": "open-unlearning configs/trainer/NPO.yaml",
    "alpha": "open-unlearning configs/trainer/NPO.yaml",
    "gamma": "open-unlearning configs/trainer/NPO.yaml",
}


def reference(opts: SpaceOptions) -> dict[str, Ref]:
    return cited(Hparams(), SOURCES)
