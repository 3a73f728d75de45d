"""Search space for UNDIAL: optimiser knobs with UNDIAL's own learning rate on real models, the
teacher-logit shift beta and the forget/retain weights."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, Ref, SpaceOptions, cited, suggest, suggest_optimizer
from unlearn_core.methods.undial import Hparams

CONFIG = "open-unlearning configs/trainer/UNDIAL.yaml"

# UNDIAL.yaml lr 1e-4 (10x open-unlearning's 1e-5); community/methods/UNDIAL README grid
# {1e-5, 1e-4, 3e-4}; widened to 1e-6..1e-3. tiny keeps its preset range
LR = {"tiny": None, "llm": Range(1e-6, 1e-3, log=True)}


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts, lr=LR[opts.preset]) | {
        # UNDIAL.yaml 10; open-unlearning README grid {3, 10, 30}; widened to 1..100
        "beta": suggest(trial, "beta", Range(1.0, 100.0, log=True), opts),
        # UNDIAL.yaml 1; a narrow band, the ratio to alpha carries the trade-off
        "gamma": suggest(trial, "gamma", Range(0.5, 2.0), opts),
        # UNDIAL.yaml 0 (no retain term); run.sh grid {1, 2, 5}. Linear so the default 0 is inside
        "alpha": suggest(trial, "alpha", Range(0.0, 5.0), opts),
    }


OWN = {"tiny": {}, "llm": {"lr": Ref(1e-4, f"{CONFIG} (its training args)")}}


def reference(opts: SpaceOptions) -> dict[str, Ref]:
    return cited(Hparams(), {"beta": CONFIG, "gamma": CONFIG, "alpha": CONFIG}) | OWN[opts.preset]
