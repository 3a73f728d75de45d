"""Search space for RMU: optimiser knobs, the steered layer (its two predecessors train too), the
steering coefficient and the retain weight."""

from __future__ import annotations

import optuna

from search_spaces._common import Range, SpaceOptions, suggest, suggest_optimizer

# the steered layer: both layers of the built-in model; for real models the paper's 7 (32-layer
# Zephyr) up to the original repo's 15 (Llama-3.1-8B), which a 16-layer Llama-3.2-1B still has.
# From 1, the module default, so the reference point lies inside
LAYER = {"tiny": Range(0, 1, integer=True), "llm": Range(1, 15, integer=True)}
# the retain weight: the module default 10 was chosen on tiny-tofu (1200 froze it); for real
# models RMU.yaml and DUSK 1, the original repo 350-1600, the paper 1200
ALPHA = {"tiny": Range(1.0, 100.0, log=True), "llm": Range(1.0, 2000.0, log=True)}


def space(trial: optuna.Trial, opts: SpaceOptions) -> dict:
    layer = suggest(trial, "layer", LAYER[opts.preset], opts)
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
