"""Search space for DualOptim (ME+GD base): optimiser knobs, the forget/retain step cycle and the
forget learning-rate ratio."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, SpaceOptions, suggest, suggest_optimizer


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    # gamma and alpha are not searched: each phase has its own Adam moments, so scaling one phase's
    # loss leaves its updates unchanged (up to gradient clipping and eps); beta acts only with the
    # npo, idk_dpo and idk_ap bases
    return suggest_optimizer(trial, opts) | {
        # dualoptim.sh 1; widened to 1..4
        "forget_freq": suggest(trial, "forget_freq", Range(1, 4, integer=True), opts),
        # dualoptim.sh 5; widened to 0..10 (0: forget steps only)
        "retain_freq": suggest(trial, "retain_freq", Range(0, 10, integer=True), opts),
        # dualoptim.sh 1 (1e-5 / 1e-5); me_gd_dual.sh swept forget_lr 6e-6..1.4e-5 (0.6..1.4);
        # widened to 0.2..5
        "forget_lr_ratio": suggest(trial, "forget_lr_ratio", Range(0.2, 5.0, log=True), opts),
    }
