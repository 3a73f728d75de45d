"""Search space for SatImp: optimiser knobs, the two token-weight exponents and the forget/retain
weights."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, Ref, SpaceOptions, cited, suggest, suggest_optimizer
from unlearn_core.methods.satimp import Hparams


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts) | {
        # SatImp.yaml 5 (its broken run.sh meant {5, 6}); widened to 1..10
        "beta1": suggest(trial, "beta1", Range(1.0, 10.0), opts),
        # SatImp.yaml 1; widened to 0.1..5
        "beta2": suggest(trial, "beta2", Range(0.1, 5.0, log=True), opts),
        # SatImp.yaml 0.1 (its class and README say 1); covers both
        "gamma": suggest(trial, "gamma", Range(0.05, 1.0, log=True), opts),
        # SatImp.yaml 1 (class and README 0.1); widened both ways as open-unlearning's {1, 2, 5}
        "alpha": suggest(trial, "alpha", Range(0.1, 10.0, log=True), opts),
    }


# where each default of the reference point comes from (the values: Hparams)
SOURCES = {
    "beta1": "open-unlearning configs/trainer/SatImp.yaml",
    "beta2": "open-unlearning configs/trainer/SatImp.yaml",
    "gamma": "open-unlearning configs/trainer/SatImp.yaml",
    "alpha": "open-unlearning configs/trainer/SatImp.yaml",
}
# on real models the method's own optimiser setting, where its source gives one
OWN = {"tiny": {}, "llm": {"epochs": Ref(5, "open-unlearning configs/trainer/SatImp.yaml")}}


def reference(opts: SpaceOptions) -> dict[str, Ref]:
    return cited(Hparams(), SOURCES) | OWN[opts.preset]
