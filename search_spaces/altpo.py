"""Search space for AltPO: optimiser knobs, DPO temperature beta and the forget/retain weights."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, Ref, SpaceOptions, cited, suggest, suggest_optimizer
from unlearn_core.methods.altpo import Hparams


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts) | {
        # open-unlearning AltPO run.sh {0.05, 0.1, 0.5}; widened to 0.01..1
        "beta": suggest(trial, "beta", Range(0.01, 1.0, log=True), opts),
        # DPO.yaml 1; a narrow band, the ratio to alpha carries the trade-off
        "gamma": suggest(trial, "gamma", Range(0.5, 2.0), opts),
        # open-unlearning AltPO run.sh {1, 2, 5}; widened both ways
        "alpha": suggest(trial, "alpha", Range(0.1, 10.0, log=True), opts),
    }


# where each default of the reference point comes from (the values: Hparams)
SOURCES = {
    "beta": "open-unlearning configs/trainer/DPO.yaml",
    "gamma": "open-unlearning configs/trainer/DPO.yaml",
    "alpha": "open-unlearning configs/trainer/DPO.yaml",
}
# on real models the method's own optimiser setting, where its source gives one
OWN = {"tiny": {}, "llm": {"epochs": Ref(2, "open-unlearning community/methods/AltPO/run.sh")}}


def reference(opts: SpaceOptions) -> dict[str, Ref]:
    return cited(Hparams(), SOURCES) | OWN[opts.preset]
