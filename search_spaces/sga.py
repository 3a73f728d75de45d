"""Search space for selective gradient ascent: optimiser knobs and the memorisation threshold."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, SpaceOptions, suggest, suggest_optimizer


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts) | {
        # DUSK 0.7; widened to 0.3..0.95 (above, only the fallback sequence is selected)
        "threshold": suggest(trial, "threshold", Range(0.3, 0.95), opts),
    }
