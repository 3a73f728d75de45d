"""Search space for selective gradient ascent: optimiser knobs and the memorisation threshold."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, Ref, SpaceOptions, cited, suggest, suggest_optimizer
from unlearn_core.methods.sga import Hparams


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts) | {
        # DUSK 0.7; widened to 0.3..0.95 (above, only the fallback sequence is selected)
        "threshold": suggest(trial, "threshold", Range(0.3, 0.95), opts),
    }


# where each default of the reference point comes from (the values: Hparams)
SOURCES = {
    "threshold": "DUSK trainer/losses.py",
}


def reference(opts: SpaceOptions) -> dict[str, Ref]:
    return cited(Hparams(), SOURCES)
