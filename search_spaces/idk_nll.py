"""Search space for IdkNLL (IDK+GD): optimiser knobs, the refusal weight gamma and the retain
weight alpha."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, Ref, SpaceOptions, cited, suggest, suggest_optimizer
from unlearn_core.methods.idk_nll import Hparams


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts) | {
        # closer-look baselines.sh 1; widened as GradDiff's gamma
        "gamma": suggest(trial, "gamma", Range(0.1, 2.0, log=True), opts),
        # closer-look 1; open-unlearning's IdkNLL checkpoints alpha 2 of {1, 2, 5}; widened
        "alpha": suggest(trial, "alpha", Range(0.1, 10.0, log=True), opts),
    }


# where each default of the reference point comes from (the values: Hparams)
SOURCES = {
    "gamma": "closer-look scripts/tofu/baselines.sh",
    "alpha": "closer-look scripts/tofu/baselines.sh",
}
# on real models the method's own optimiser setting, where its source gives one
OWN = {"tiny": {}, "llm": {"epochs": Ref(5, "closer-look config/tofu.yaml")}}


def reference(opts: SpaceOptions) -> dict[str, Ref]:
    return cited(Hparams(), SOURCES) | OWN[opts.preset]
