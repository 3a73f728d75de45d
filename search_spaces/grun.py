"""Search space for GRUN (gated GD, the default inner loss): optimiser knobs with GRUN's own
learning rate and length, the LoReFT rank and the gate and retain weights; the edited layers are
fractions of the target model's depth."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, Ref, SpaceOptions, cited, suggest, suggest_optimizer
from unlearn_core.methods.grun import Hparams

SCRIPT = "GRUN cmd_grun.sh"
HF = "GRUN: HF Trainer defaults (no warmup, weight decay 0, linear)"

# only the edits train: cmd_grun.sh uses lr 4e-3 on 8B models, 400x open-unlearning's 1e-5; from
# 40x below to 2.5x above it. tiny keeps its preset range
LR = {"tiny": None, "llm": Range(1e-4, 1e-2, log=True)}
# cmd_grun.sh: 40 epochs at batch 16 on forget05 = 520 steps (40 epochs at batch 32 on forget10
# here); from 1 to 1.5x. tiny keeps its preset range
EPOCHS = {"tiny": None, "llm": Range(1, 60, integer=True)}


def edited_layers(opts: SpaceOptions) -> tuple[int, ...]:
    """cmd_grun.sh's layers 20, 25, 31 of 32 as fractions of depth (10, 12, 15 of 16); tiny: both
    layers of the built-in model, the module default."""
    if opts.preset == "tiny":
        return Hparams().layers
    n = opts.depth
    return tuple(sorted({min(n - 1, round(k * n / 32)) for k in (20, 25, 31)}))


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    # forget_weight stays 1 (under AdamW only the ratios of the three weights matter), and beta
    # and npo_coeff act only with inner = "npo"
    return suggest_optimizer(trial, opts, lr=LR[opts.preset], epochs=EPOCHS[opts.preset]) | {
        # derived from the depth, not searched (see edited_layers)
        "layers": tuple(opts.fixed.get("layers", edited_layers(opts))),
        # cmd_grun.sh 4; widened to 1..16 (R has rank <= hidden size, 64 in the built-in model)
        "rank": suggest(trial, "rank", Range(1, 16, log=True, integer=True), opts),
        # cmd_grun.sh 10 (TOFU), 100 (WMDP); widened to 1..100
        "gate_weight": suggest(trial, "gate_weight", Range(1.0, 100.0, log=True), opts),
        # cmd_grun.sh 2 (gated GD), 1 (NPO, IDK); widened to 0.2..10
        "retain_weight": suggest(trial, "retain_weight", Range(0.2, 10.0, log=True), opts),
    }


# GRUN's own optimiser on real models (cmd_grun.sh and the HF Trainer it runs)
OWN = {
    "tiny": {},
    "llm": {
        "lr": Ref(4e-3, f"{SCRIPT} (hard-coded in its trainer)"),
        "epochs": Ref(40, f"{SCRIPT}: 520 steps (40 epochs at batch 16 on forget05)"),
        "warmup_epochs": Ref(0.0, HF),
        "weight_decay": Ref(0.0, HF),
        "schedule": Ref("linear", HF),
    },
}


def reference(opts: SpaceOptions) -> dict[str, Ref]:
    layers = {
        "tiny": "both layers of the built-in model (module default)",
        "llm": f"{SCRIPT}: 20, 25, 31 of 32, as fractions of depth",
    }[opts.preset]
    return (
        cited(Hparams(), {"rank": SCRIPT, "gate_weight": SCRIPT, "retain_weight": SCRIPT})
        | {"layers": Ref(edited_layers(opts), layers)}
        | OWN[opts.preset]
    )
