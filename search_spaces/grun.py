"""Search space for GRUN (gated GD, the default inner loss): optimiser knobs with GRUN's own
learning rates, the LoReFT rank and the gate and retain weights."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, SpaceOptions, suggest, suggest_optimizer

# only the edits train: cmd_grun.sh uses lr 4e-3 on 8B models, 400x open-unlearning's 1e-5; from
# the preset's default 1e-5 (the reference point) up to 1e-2. tiny keeps its preset range
LR = {"tiny": None, "llm": Range(1e-5, 1e-2, log=True)}


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    # forget_weight stays 1 (under AdamW only the ratios of the three weights matter), and beta
    # and npo_coeff act only with inner = "npo"
    return suggest_optimizer(trial, opts, lr=LR[opts.preset]) | {
        # cmd_grun.sh 4; widened to 1..16 (R has rank <= hidden size, 64 in the built-in model)
        "rank": suggest(trial, "rank", Range(1, 16, log=True, integer=True), opts),
        # cmd_grun.sh 10 (TOFU), 100 (WMDP); widened to 1..100
        "gate_weight": suggest(trial, "gate_weight", Range(1.0, 100.0, log=True), opts),
        # cmd_grun.sh 2 (gated GD), 1 (NPO, IDK); widened to 0.2..10
        "retain_weight": suggest(trial, "retain_weight", Range(0.2, 10.0, log=True), opts),
    }
