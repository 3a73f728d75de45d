"""The method registry: one line per method, name -> Method record built from its module."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from unlearn_core.config import check_fields
from unlearn_core.errors import UserError
from unlearn_core.methods import (
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


@dataclass(frozen=True)
class Method:
    """What the loop needs from a method module. Only `Hparams`, `loss` and `needs_reference` are
    required; the optional hooks cover methods that are more than a loss over batches."""

    name: str
    hparams: type
    loss: Callable
    needs_reference: Callable[[Any], bool]
    description: str
    # encodings the loss reads from a batch: forget, forget_idk, forget_alt, forget_sensitive,
    # retain, retain_idk (built by unlearn_core.data.views)
    views: tuple[str, ...] = ("forget", "retain")
    # prepare(model, hp) -> model: freeze/attach before the optimizer is built (RMU, GRUN)
    prepare: Callable | None = None
    # optimizer(params, train_cfg, hp) -> torch.optim.Optimizer, instead of AdamW (DualOptim)
    optimizer: Callable | None = None
    # finalize(model, ref_model, hp): applied in place after training (task vectors)
    finalize: Callable | None = None
    # the view whose answer NLL unlearning should move, and which way (+1 up, -1 down); tests and
    # diagnostics read it (refusal methods lower the NLL of the refusal instead of raising forget's)
    moves: tuple[str, int] = ("forget", +1)
    # why the method cannot train LoRA adapters ("" = it trains them as any other weights)
    no_lora: str = ""

    @classmethod
    def of(cls, name: str, module: ModuleType, **hooks: Any) -> Method:
        doc = (module.__doc__ or "").strip().splitlines()
        return cls(
            name,
            module.Hparams,
            module.loss,
            module.needs_reference,
            doc[0] if doc else "",
            **hooks,
        )

    def check_lora(self, lora_r: int) -> None:
        if lora_r and self.no_lora:
            raise UserError(
                f"{self.name} does not take --lora-r: it {self.no_lora}; "
                "use full fine-tuning (--lora-r 0)"
            )

    def make_hparams(self, values: dict[str, Any] | None = None) -> Any:
        """Build the Hparams, rejecting unknown names and bad values with a user-facing message."""
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(self.hparams)}
        unknown = sorted(set(values) - known)
        if unknown:
            accepted = ", ".join(sorted(known)) or "none"
            raise UserError(
                f"{self.name} has no hyperparameter {unknown[0]!r}; accepted: {accepted}"
            )
        values = check_fields(values, self.hparams, self.name)  # booleans are not numbers
        try:
            return self.hparams(**values)
        except (TypeError, ValueError) as e:
            raise UserError(f"{self.name}: {e}") from e


METHODS: dict[str, Method] = {
    "grad_ascent": Method.of("grad_ascent", grad_ascent, views=("forget",)),
    "grad_diff": Method.of("grad_diff", grad_diff),
    "npo": Method.of("npo", npo),
    "rmu": Method.of("rmu", rmu, prepare=rmu.prepare, no_lora=rmu.NO_LORA),
    "pdu": Method.of("pdu", pdu, prepare=pdu.prepare),
    "task_vector": Method.of(
        "task_vector",
        task_vector,
        views=("forget",),
        finalize=task_vector.finalize,
        no_lora=task_vector.NO_LORA,
    ),
    "sga": Method.of("sga", sga, views=("forget",)),
    "tau": Method.of(
        "tau",
        tau,
        views=("forget",),
        prepare=tau.prepare,
        optimizer=tau.optimizer,
        finalize=tau.finalize,
        no_lora=task_vector.NO_LORA,
    ),
    "grun": Method.of("grun", grun, views=grun.VIEWS, prepare=grun.prepare, no_lora=grun.NO_LORA),
    "dual_optim": Method.of(
        "dual_optim", dual_optim, views=dual_optim.VIEWS, optimizer=dual_optim.optimizer
    ),
    "simnpo": Method.of("simnpo", simnpo),
    "idk_nll": Method.of(
        "idk_nll", idk_nll, views=("forget_idk", "retain"), moves=("forget_idk", -1)
    ),
    "idk_dpo": Method.of(
        "idk_dpo", idk_dpo, views=("forget", "forget_idk", "retain"), moves=("forget_idk", -1)
    ),
    "me_gd": Method.of("me_gd", me_gd),
    "idk_ap": Method.of(
        "idk_ap", idk_ap, views=("forget_idk", "retain", "retain_idk"), moves=("forget_idk", -1)
    ),
    "undial": Method.of("undial", undial),
    "wga": Method.of("wga", wga),
    "satimp": Method.of("satimp", satimp),
    "ceu": Method.of("ceu", ceu, views=("forget",)),
    "altpo": Method.of("altpo", altpo, views=("forget", "forget_alt", "retain")),
    "palu": Method.of(
        "palu", palu, views=("forget", "forget_sensitive", "retain"), moves=("forget_sensitive", +1)
    ),
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise UserError(f"unknown method {name!r}; accepted: {', '.join(METHODS)}")
    return METHODS[name]
