"""Search space for task-vector negation: optimiser knobs (of the forget fine-tune) and the scale of
the subtracted task vector."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, Ref, SpaceOptions, cited, suggest, suggest_optimizer
from unlearn_core.methods.task_vector import Hparams


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts) | {
        # DUSK forget_tv.py alpha 1.0; widened to 0.25..2
        "scale": suggest(trial, "scale", Range(0.25, 2.0, log=True), opts),
    }


# where each default of the reference point comes from (the values: Hparams)
SOURCES = {
    "scale": "DUSK forget_tv.py",
}


def reference(opts: SpaceOptions) -> dict[str, Ref]:
    return cited(Hparams(), SOURCES)
