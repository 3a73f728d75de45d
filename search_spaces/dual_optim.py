"""Search space for DualOptim (ME+GD base): optimiser knobs with DualOptim's length on real models,
the forget/retain step cycle and the forget learning-rate ratio."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, Ref, SpaceOptions, cited, suggest, suggest_optimizer
from unlearn_core.methods.dual_optim import Hparams

SCRIPT = "DualOptim LLM/scripts/tofu/dualoptim.sh"
CONFIG = "DualOptim LLM/config/phi1-5_tofu.yaml"

# An epoch here makes forget_freq / (forget_freq + retain_freq) of a pass of forget steps
# (dual_optim.py), 1/6 at the reference 1:5 cycle, where DualOptim runs a whole pass per epoch.
# llm: dualoptim.sh's 5 epochs of forget passes are 30 here; 1 to 10 of its passes (6..60).
# tiny keeps its preset range
EPOCHS = {"tiny": None, "llm": Range(6, 60, integer=True)}
# DualOptim warms up for one of its epochs (HF's one-epoch warmup), 6 here at 1:5; llm: 0 to that
WARMUP = {"tiny": None, "llm": Range(0.0, 6.0)}


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    # gamma and alpha are not searched: each phase has its own Adam moments, so scaling one phase's
    # loss leaves its updates unchanged (up to gradient clipping and eps); beta acts only with the
    # npo, idk_dpo and idk_ap bases
    p = opts.preset
    return suggest_optimizer(trial, opts, epochs=EPOCHS[p], warmup_epochs=WARMUP[p]) | {
        # dualoptim.sh 1; widened to 1..4
        "forget_freq": suggest(trial, "forget_freq", Range(1, 4, integer=True), opts),
        # dualoptim.sh 5; widened to 0..10 (0: forget steps only)
        "retain_freq": suggest(trial, "retain_freq", Range(0, 10, integer=True), opts),
        # dualoptim.sh 1 (1e-5 / 1e-5); me_gd_dual.sh swept forget_lr 6e-6..1.4e-5 (0.6..1.4);
        # widened to 0.2..5
        "forget_lr_ratio": suggest(trial, "forget_lr_ratio", Range(0.2, 5.0, log=True), opts),
    }


OWN = {
    "tiny": {},
    "llm": {
        "lr": Ref(1e-5, SCRIPT),
        "epochs": Ref(30, f"{SCRIPT}: 5 forget passes at 1:5 (dual_optim.py docstring)"),
        "warmup_epochs": Ref(6.0, f"{CONFIG}: HF's one-epoch warmup, 6 epochs here at 1:5"),
        "weight_decay": Ref(0.01, CONFIG),
        "schedule": Ref("linear", f"{CONFIG} (HF Trainer default)"),
    },
}


def reference(opts: SpaceOptions) -> dict[str, Ref]:
    sources = {"forget_freq": SCRIPT, "retain_freq": SCRIPT, "forget_lr_ratio": SCRIPT}
    return cited(Hparams(), sources) | OWN[opts.preset]
