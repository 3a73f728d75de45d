"""Search space for primal-dual unlearning: optimiser knobs, the forget weight, and the dual
variable's start, step size, retain budget and warmup."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, Ref, SpaceOptions, cited, suggest, suggest_optimizer
from unlearn_core.methods.pdu import Hparams


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts) | {
        # open-unlearning PDU.yaml 1; a narrow band, lambda carries the trade-off
        "gamma": suggest(trial, "gamma", Range(0.5, 2.0), opts),
        # initial lambda: run.sh TOFU 100, MUSE 50, PDU.yaml 1; widened to 1..300
        "alpha": suggest(trial, "alpha", Range(1.0, 300.0, log=True), opts),
        # eta: run.sh TOFU 5, MUSE 1, PDU.yaml 1; widened to 0.1..20
        "dual_step_size": suggest(trial, "dual_step_size", Range(0.1, 20.0, log=True), opts),
        # eps: run.sh TOFU 0.3, MUSE 0.1 (Books) and 1.5 (News); widened to 0.05..2
        "retain_loss_eps": suggest(trial, "retain_loss_eps", Range(0.05, 2.0, log=True), opts),
        # run.sh 5 of 10 epochs = 65 steps on forget10 at batch 32; widened to 0..130 (10 epochs).
        # Steps, not epochs: on a smaller split most of this range means no dual update at all
        "dual_warmup_steps": suggest(trial, "dual_warmup_steps", Range(0, 130, integer=True), opts),
    }


# where each default of the reference point comes from (the values: Hparams)
SOURCES = {
    "gamma": "open-unlearning community/methods/PDU/PDU.yaml",
    "alpha": "open-unlearning community/methods/PDU/run.sh (TOFU)",
    "dual_step_size": "open-unlearning community/methods/PDU/run.sh (TOFU)",
    "retain_loss_eps": "open-unlearning community/methods/PDU/run.sh (TOFU)",
    "dual_warmup_steps": "PDU run.sh: 5 of 10 epochs on forget10 at batch 32",
}


def reference(opts: SpaceOptions) -> dict[str, Ref]:
    return cited(Hparams(), SOURCES)
