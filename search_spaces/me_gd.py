"""Search space for ME+GD: optimiser knobs, entropy weight gamma and retain weight alpha."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, Ref, SpaceOptions, cited, suggest, suggest_optimizer
from unlearn_core.methods.me_gd import Hparams


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    return suggest_optimizer(trial, opts) | {
        # closer-look forget_coeff 0.1 (TOFU), 0.5 (real-world), 1.0 (continual, DualOptim) over
        # 500 padded positions: x ~0.1 here, where the mean is over answer tokens (me_gd.py)
        "gamma": suggest(trial, "gamma", Range(1e-3, 0.3, log=True), opts),
        # closer-look regularization_coeff 1; widened both ways as open-unlearning's {1, 2, 5}
        "alpha": suggest(trial, "alpha", Range(0.1, 10.0, log=True), opts),
    }


# where each default of the reference point comes from (the values: Hparams)
SOURCES = {
    "gamma": "closer-look me_gd.sh 0.1 over 500 positions, per answer token (me_gd.py)",
    "alpha": "closer-look scripts/tofu/me_gd.sh",
}
# on real models the method's own optimiser setting, where its source gives one
OWN = {"tiny": {}, "llm": {"epochs": Ref(5, "closer-look config/tofu.yaml")}}


def reference(opts: SpaceOptions) -> dict[str, Ref]:
    return cited(Hparams(), SOURCES) | OWN[opts.preset]
