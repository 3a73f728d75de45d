"""Search space for WGA: optimiser knobs, the token-weight exponent beta and the forget/retain
weights."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, Ref, SpaceOptions, cited, suggest, suggest_optimizer
from unlearn_core.methods.wga import Hparams


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts) | {
        # WGA.yaml 1; widened to 0.1..5 (0 would be plain gradient ascent)
        "beta": suggest(trial, "beta", Range(0.1, 5.0, log=True), opts),
        # WGA.yaml 1; a narrow band, the ratio to alpha carries the trade-off
        "gamma": suggest(trial, "gamma", Range(0.5, 2.0), opts),
        # WGA.yaml 1; widened both ways as open-unlearning's {1, 2, 5}
        "alpha": suggest(trial, "alpha", Range(0.1, 10.0, log=True), opts),
    }


# where each default of the reference point comes from (the values: Hparams)
SOURCES = {
    "beta": "open-unlearning configs/trainer/WGA.yaml",
    "gamma": "open-unlearning configs/trainer/WGA.yaml",
    "alpha": "open-unlearning configs/trainer/WGA.yaml",
}
# on real models the method's own optimiser setting, where its source gives one
OWN = {"tiny": {}, "llm": {"epochs": Ref(5, "open-unlearning configs/trainer/WGA.yaml")}}


def reference(opts: SpaceOptions) -> dict[str, Ref]:
    return cited(Hparams(), SOURCES) | OWN[opts.preset]
