"""The search-space registry: method name -> define-by-run space(trial, opts) -> constants, and
method name -> its cited reference point, the configuration each sweep evaluates first."""

from __future__ import annotations

from search_spaces import (
    altpo,
    ceu,
    dual_optim,
    grad_ascent,
    grad_diff,
    grun,
    idk_ap,
    idk_dpo,
    idk_nll,
    me_gd,
    npo,
    palu,
    pdu,
    rmu,
    satimp,
    sga,
    simnpo,
    task_vector,
    tau,
    undial,
    wga,
)
from search_spaces._common import Ref, SpaceOptions, optimizer_reference

SPACES = {
    "altpo": altpo.space,
    "ceu": ceu.space,
    "dual_optim": dual_optim.space,
    "grad_ascent": grad_ascent.space,
    "grad_diff": grad_diff.space,
    "grun": grun.space,
    "idk_ap": idk_ap.space,
    "idk_dpo": idk_dpo.space,
    "idk_nll": idk_nll.space,
    "me_gd": me_gd.space,
    "npo": npo.space,
    "palu": palu.space,
    "pdu": pdu.space,
    "rmu": rmu.space,
    "satimp": satimp.space,
    "sga": sga.space,
    "simnpo": simnpo.space,
    "task_vector": task_vector.space,
    "tau": tau.space,
    "undial": undial.space,
    "wga": wga.space,
}


# the method's reference point: its own knobs and optimiser setting where its sources give them
REFERENCES = {
    "altpo": altpo.reference,
    "ceu": ceu.reference,
    "dual_optim": dual_optim.reference,
    "grad_ascent": grad_ascent.reference,
    "grad_diff": grad_diff.reference,
    "grun": grun.reference,
    "idk_ap": idk_ap.reference,
    "idk_dpo": idk_dpo.reference,
    "idk_nll": idk_nll.reference,
    "me_gd": me_gd.reference,
    "npo": npo.reference,
    "palu": palu.reference,
    "pdu": pdu.reference,
    "rmu": rmu.reference,
    "satimp": satimp.reference,
    "sga": sga.reference,
    "simnpo": simnpo.reference,
    "task_vector": task_vector.reference,
    "tau": tau.reference,
    "undial": undial.reference,
    "wga": wga.reference,
}


# Methods whose loss is gamma * L_forget + alpha * L_retain and one Adam: scaling the whole loss
# leaves Adam's steps almost unchanged, so only alpha / gamma matters. A sweep holds gamma at its
# reference and searches alpha alone, which is then the ratio times that reference (its range
# is centred on the reference ratio in every space below); `--space gamma=...` searches both.
# Not PDU (alpha starts a dual variable), DualOptim (one Adam per term), nor CEU, RMU, GRUN.
RATIO_HELD = {
    "altpo": "gamma",
    "grad_diff": "gamma",
    "idk_ap": "gamma",
    "idk_dpo": "gamma",
    "idk_nll": "gamma",
    "me_gd": "gamma",
    "npo": "gamma",
    "palu": "gamma",
    "satimp": "gamma",
    "simnpo": "gamma",
    "undial": "gamma",
    "wga": "gamma",
}
# Optimiser knobs a sweep holds at the method's reference unless the user searches them
# (`--space warmup_epochs=0:1`) or fixes another value: each searched dimension costs trials,
# for choices the benchmark's own setup already makes (bench_search, issue 17)
HELD_OPTIMIZER = ("schedule", "warmup_epochs", "weight_decay")


def held(method: str) -> tuple[str, ...]:
    """The parameters a sweep of `method` holds at their reference values by default."""
    return HELD_OPTIMIZER + ((RATIO_HELD[method],) if method in RATIO_HELD else ())


def reference_point(method: str, opts: SpaceOptions) -> dict[str, Ref]:
    """What a sweep of `method` evaluates first, each value with its source: the benchmark's
    optimiser setting (with the sweep's batch) under the method's own values."""
    return optimizer_reference(opts) | REFERENCES[method](opts)
