"""Search space for IDK+AP: optimiser knobs, answer-preservation temperature beta and the refusal
and preservation weights."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, Ref, SpaceOptions, cited, suggest, suggest_optimizer
from unlearn_core.methods.idk_ap import Hparams


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts) | {
        # closer-look idk_ap.sh 0.1; widened to 0.01..1 as NPO's beta
        "beta": suggest(trial, "beta", Range(0.01, 1.0, log=True), opts),
        # closer-look 1; a narrow band, the ratio to alpha carries the trade-off
        "gamma": suggest(trial, "gamma", Range(0.5, 2.0), opts),
        # closer-look 1; widened both ways as open-unlearning's {1, 2, 5}
        "alpha": suggest(trial, "alpha", Range(0.1, 10.0, log=True), opts),
    }


# where each default of the reference point comes from (the values: Hparams)
SOURCES = {
    "beta": "closer-look scripts/tofu/idk_ap.sh",
    "gamma": "closer-look scripts/tofu/idk_ap.sh",
    "alpha": "closer-look scripts/tofu/idk_ap.sh",
}
# on real models the method's own optimiser setting, where its source gives one
OWN = {"tiny": {}, "llm": {"epochs": Ref(5, "closer-look config/tofu.yaml")}}


def reference(opts: SpaceOptions) -> dict[str, Ref]:
    return cited(Hparams(), SOURCES) | OWN[opts.preset]
