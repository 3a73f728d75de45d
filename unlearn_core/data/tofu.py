"""TOFU's configs (`locuslab/TOFU`: every config has one split, `train`) and the fields each needs;
read from the hub or a local copy by `unlearn_core.data.sources`."""

from __future__ import annotations

from unlearn_core.data.sources import load_rows
from unlearn_core.errors import UserError

FORGET_SPLITS = ("forget01", "forget05", "forget10")
QA = ("question", "answer")
PERTURBED = ("question", "answer", "paraphrased_answer", "perturbed_answer")
OPTIONS = ("question", "answer", "perturbed_answer")


def required_fields(config: str) -> tuple[str, ...]:
    if config in ("real_authors_perturbed", "world_facts_perturbed"):
        return OPTIONS
    if config.endswith("_perturbed"):
        return PERTURBED
    return QA


def split_configs(split: str) -> dict[str, str]:
    """The configs a forget split uses: training (forget, retain) and evaluation."""
    if split not in FORGET_SPLITS:
        raise UserError(f"unknown split {split!r}; accepted: {', '.join(FORGET_SPLITS)}")
    pct = split[-2:]
    return {
        "forget": split,
        "retain": f"retain{100 - int(pct)}",
        "forget_perturbed": f"{split}_perturbed",
        "retain_perturbed": "retain_perturbed",
        "real_authors": "real_authors_perturbed",
        "world_facts": "world_facts_perturbed",
        "holdout": f"holdout{pct}",
    }


def load_config(source: str, config: str) -> list[dict]:
    """Rows of one config from a local folder or a hub id, each checked for the needed fields."""
    return load_rows(source, config, "train", required_fields(config), single=True)
