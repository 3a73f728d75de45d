"""Search space for RMU: optimiser knobs, the steered layer (its two predecessors train too), the
steering coefficient and the retain weight; layers are fractions of the target model's depth."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, Ref, SpaceOptions, cited, suggest, suggest_optimizer
from unlearn_core.methods.rmu import Hparams

PAPER = "RMU paper (WMDP, arXiv 2403.03218 sec. 5, Zephyr-7B)"
WMDP = "open-unlearning configs/experiment/unlearn/wmdp/default.yaml (RMU's benchmark)"


def steered_layer(n_layers: int) -> int:
    """The paper's layer 7 of 32 (Zephyr-7B) as a fraction of depth: 4 of 16, 1 of 2."""
    return max(1, round(7 * n_layers / 32)) if n_layers > 1 else 0


def layer_range(opts: SpaceOptions) -> Range:
    n = opts.depth
    if opts.preset == "tiny":  # every layer of the built-in model
        return Range(0, n - 1, integer=True)
    # from layer 1 to half the depth: the paper's 7/32 (Zephyr-7B) and the original repo's 15/32
    # (Llama-3.1-8B) both inside
    low = min(1, n - 1)
    return Range(low, max(low, n // 2), integer=True)


# the retain weight: the module default 10 was chosen on tiny-tofu (1200 froze it); for real
# models RMU.yaml and DUSK 1, the original repo 350-1600, the paper 1200
ALPHA = {"tiny": Range(1.0, 100.0, log=True), "llm": Range(1.0, 2000.0, log=True)}


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    layer = suggest(trial, "layer", layer_range(opts), opts)
    # the paper's recipe unless fixed: down_proj of the steered layer and the two before it
    # ((5, 6, 7) for layer 7); derived, not searched, so it satisfies trainable_layers <= layer
    trainable = opts.fixed.get("trainable_layers", range(max(0, layer - 2), layer + 1))
    return suggest_optimizer(trial, opts) | {
        "layer": layer,
        "trainable_layers": tuple(trainable),
        # RMU.yaml 2, paper 6.5 (Zephyr-7B), DUSK 20, original repo 27-30 (7-8B); widened to 1..100
        "steering_coeff": suggest(trial, "steering_coeff", Range(1.0, 100.0, log=True), opts),
        # gamma stays 1: under AdamW only the ratio alpha / gamma matters (see ALPHA)
        "alpha": suggest(trial, "alpha", ALPHA[opts.preset], opts),
    }


# RMU's own optimiser on real models: the WMDP setting (lr 5e-5, constant, no warmup or decay;
# the original repo's lr 5e-5 too); epochs stay the benchmark's (TOFU forget10: 130 steps at
# batch 32, near the original repo's 150 batches)
OWN = {
    "tiny": {"alpha": Ref(10.0, "chosen on tiny-tofu-small (1200 froze the 64-dim model)")},
    "llm": {
        "alpha": Ref(1200.0, PAPER),
        "lr": Ref(5e-5, WMDP),
        "warmup_epochs": Ref(0.0, WMDP),
        "weight_decay": Ref(0.0, WMDP),
        "schedule": Ref("constant", WMDP),
    },
}


def reference(opts: SpaceOptions) -> dict[str, Ref]:
    layer = steered_layer(opts.depth)
    return (
        cited(Hparams(), {"steering_coeff": PAPER})
        | {
            "layer": Ref(layer, f"{PAPER}: layer 7 of 32, as a fraction of depth"),
            "trainable_layers": Ref(
                tuple(range(max(0, layer - 2), layer + 1)),
                f"{PAPER}: down_proj of the steered layer and the two before it",
            ),
        }
        | OWN[opts.preset]
    )
