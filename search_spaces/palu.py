"""Search space for PALU: optimiser knobs, the top-k logits flattened, the sensitive-span prefix
length and the forget/retain weights."""

from __future__ import annotations

import optuna

from search_spaces._common import (
    Range,
    Ref,
    SpaceOptions,
    cited,
    suggest,
    suggest_choice,
    suggest_optimizer,
)
from unlearn_core.methods.palu import Hparams

# PALU's grid on 32k-128k vocabularies is {1, 1000, 5000, 10000}; the built-in model's vocabulary
# is about 2k tokens (1954 on tiny-tofu-small) and topk fails for k > V, so tiny stops at 512
TOP_K = {
    "tiny": Range(1, 512, log=True, integer=True),
    "llm": Range(1, 10000, log=True, integer=True),
}


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts) | {
        # PALU.yaml 1; grid {1, 1000, 5000, 10000} (see TOP_K)
        "top_k": suggest(trial, "top_k", TOP_K[opts.preset], opts),
        # PALU.yaml -1 (every sensitive token); grid {1, 2, 3, 4, 5, 10}. A choice: -1 is not on
        # the integer scale
        "first_n": suggest_choice(trial, "first_n", (-1, 1, 2, 3, 4, 5, 10), opts),
        # PALU.yaml 1, fixed in its grid; a narrow band, the ratio to alpha carries the trade-off
        "gamma": suggest(trial, "gamma", Range(0.5, 2.0), opts),
        # PALU grid {0.2, 0.5, 1, 2, 5}; widened to 0.1..10
        "alpha": suggest(trial, "alpha", Range(0.1, 10.0, log=True), opts),
    }


# where each default of the reference point comes from (the values: Hparams)
SOURCES = {
    "top_k": "PALU configs/trainer/PALU.yaml",
    "first_n": "PALU configs/trainer/PALU.yaml",
    "gamma": "PALU configs/trainer/PALU.yaml",
    "alpha": "PALU configs/trainer/PALU.yaml",
}


def reference(opts: SpaceOptions) -> dict[str, Ref]:
    return cited(Hparams(), SOURCES)
