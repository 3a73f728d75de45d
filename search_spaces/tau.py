"""Search space for TAU: optimiser knobs, the SGA phase length and threshold, and the task-vector
scale."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, Ref, SpaceOptions, cited, suggest, suggest_optimizer
from unlearn_core.methods.tau import Hparams


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts) | {
        # DUSK 5 SGA epochs (about 5 optimizer steps there); widened to 0..20
        "sga_steps": suggest(trial, "sga_steps", Range(0, 20, integer=True), opts),
        # DUSK 0.7; widened to 0.3..0.95 as SGA's
        "threshold": suggest(trial, "threshold", Range(0.3, 0.95), opts),
        # DUSK forget_tv.py alpha 1.0; widened to 0.25..2
        "scale": suggest(trial, "scale", Range(0.25, 2.0, log=True), opts),
    }


# where each default of the reference point comes from (the values: Hparams)
SOURCES = {
    "sga_steps": "DUSK scripts/baselines_TAU.sh (5 SGA epochs)",
    "threshold": "DUSK trainer/losses.py",
    "scale": "DUSK forget_tv.py",
}


def reference(opts: SpaceOptions) -> dict[str, Ref]:
    return cited(Hparams(), SOURCES)
