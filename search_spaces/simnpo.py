"""Search space for SimNPO: optimiser knobs, temperature beta, the per-token margin delta and the
forget/retain weights."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, Ref, SpaceOptions, cited, suggest, suggest_optimizer
from unlearn_core.methods.simnpo import Hparams


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts) | {
        # SimNPO.yaml (Unlearn-Simple TOFU) 4.5; the classic grid {2.5, 4.5, 7.5}; widened to 1..10
        "beta": suggest(trial, "beta", Range(1.0, 10.0, log=True), opts),
        # SimNPO.yaml 0 (no margin); widened to 2 nats of per-token NLL
        "delta": suggest(trial, "delta", Range(0.0, 2.0), opts),
        # SimNPO.yaml npo_coeff 0.125; widened to 0.05..1 (1 is NPO's forget weight)
        "gamma": suggest(trial, "gamma", Range(0.05, 1.0, log=True), opts),
        # open-unlearning grids alpha {1, 2, 5}; widened both ways
        "alpha": suggest(trial, "alpha", Range(0.1, 10.0, log=True), opts),
    }


# where each default of the reference point comes from (the values: Hparams)
SOURCES = {
    "beta": "open-unlearning configs/trainer/SimNPO.yaml",
    "delta": "open-unlearning configs/trainer/SimNPO.yaml",
    "gamma": "open-unlearning configs/trainer/SimNPO.yaml",
    "alpha": "open-unlearning configs/trainer/SimNPO.yaml",
}


def reference(opts: SpaceOptions) -> dict[str, Ref]:
    return cited(Hparams(), SOURCES)
