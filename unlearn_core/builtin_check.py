"""Is a built-in benchmark meaningful? The bars its target and retain models must pass (the
target knows the forget set and keeps general knowledge; the retain model does not know it), and
the figures of a copy, shipped or rebuilt, measured against them."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from unlearn_core import builtin
from unlearn_core.evaluate import EvalConfig
from unlearn_core.source import Source
from unlearn_core.suites import SUITES


@dataclass(frozen=True)
class Bar:
    model: str  # target | retain
    metric: str
    op: str  # >=, <= or <
    value: float

    def met(self, v: float) -> bool:
        return {">=": v >= self.value, "<=": v <= self.value, "<": v < self.value}[self.op]


# TOFU-shaped: the target recalls forget answers and general knowledge; its forget truth ratios
# differ from the retain model's (forget_quality is the KS p of target vs retain). The small
# variant's 80 forget samples cannot reach the default's p < 1e-6 (400 samples).
_TOFU = (
    Bar("target", "forget_Q_A_ROUGE", ">=", 0.9),
    Bar("target", "ra_Q_A_ROUGE", ">=", 0.8),
    Bar("target", "wf_Q_A_ROUGE", ">=", 0.8),
)
# Documents: the target continues forget passages verbatim and answers forget-only questions,
# the retrain model does neither; both keep retain / shared knowledge.
_MUSE = (
    Bar("target", "forget_verbmem_ROUGE", ">=", 0.8),
    Bar("retain", "forget_verbmem_ROUGE", "<=", 0.5),
    Bar("target", "forget_knowmem_ROUGE", ">=", 0.9),
    Bar("retain", "forget_knowmem_ROUGE", "<=", 0.3),
    Bar("target", "retain_knowmem_ROUGE", ">=", 0.9),
    Bar("retain", "retain_knowmem_ROUGE", ">=", 0.9),
)
_DUSK = (
    Bar("target", "forget_verbmem_ROUGE", ">=", 0.8),
    Bar("retain", "forget_verbmem_ROUGE", "<=", 0.5),
    Bar("target", "forget_specific_ROUGE", ">=", 0.9),
    Bar("retain", "forget_specific_ROUGE", "<=", 0.3),
    Bar("target", "shared_ROUGE", ">=", 0.9),
    Bar("retain", "shared_ROUGE", ">=", 0.9),
    Bar("target", "retain_specific_ROUGE", ">=", 0.9),
    Bar("retain", "retain_specific_ROUGE", ">=", 0.9),
)
BARS = {
    "tiny-tofu": (*_TOFU, Bar("target", "forget_quality", "<", 1e-6)),
    "tiny-tofu-small": (*_TOFU, Bar("target", "forget_quality", "<", 1e-3)),
    "tiny-muse": _MUSE,
    "tiny-muse-small": _MUSE,
    "tiny-dusk": _DUSK,
    "tiny-dusk-small": _DUSK,
}


def figures(name: str, copy: str) -> dict[str, dict[str, float]]:
    """{"target": metrics, "retain": metrics} of the shipped or rebuilt copy on its default forget
    split, for the models the variant's bars read (TOFU: the target's metrics hold the KS test
    against the retain model; the retain model is not scored on its own)."""
    from unlearn_core.job import evaluate_model

    suite = SUITES[builtin.VARIANTS[name].family]
    split = suite.default_split
    with builtin.using(copy):
        models = {
            "target": builtin.model_dir(name, "full"),
            "retain": builtin.model_dir(name, suite.builtin_retain(split)),
        }
        out = {}
        for role, path in models.items():
            if not any(b.model == role for b in BARS[name]):
                continue
            source = Source(name, split, model=str(path))
            metrics, _ = evaluate_model(source, EvalConfig(), device=torch.device("cpu"))
            out[role] = metrics
    return out


def check(name: str, figs: dict[str, dict[str, float]]) -> list[tuple[Bar, float, bool]]:
    """Every bar of the variant with the copy's value and whether it is met."""
    return [(b, figs[b.model][b.metric], b.met(figs[b.model][b.metric])) for b in BARS[name]]
