"""Search space for CE-U: optimiser knobs and how many opening answer tokens the loss skips."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, Ref, SpaceOptions, cited, suggest, suggest_optimizer
from unlearn_core.methods.ceu import Hparams


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts) | {
        # CEU.yaml 1; widened to 0..3 (short tiny-tofu answers keep most tokens)
        "ignore_first_n_answer_tokens": suggest(
            trial, "ignore_first_n_answer_tokens", Range(0, 3, integer=True), opts
        ),
    }


# where each default of the reference point comes from (the values: Hparams)
SOURCES = {
    "ignore_first_n_answer_tokens": "open-unlearning configs/trainer/CEU.yaml",
}


def reference(opts: SpaceOptions) -> dict[str, Ref]:
    return cited(Hparams(), SOURCES)
