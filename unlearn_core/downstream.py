"""Downstream capability through lm-evaluation-harness (DUSK's arc_challenge, mmlu, ...): an
optional extra (`pip install 'unlearn-sweep[downstream]'`); without it, one clear line."""

from __future__ import annotations

import torch

from unlearn_core.errors import UserError


def require_lm_eval() -> None:
    try:
        import lm_eval  # noqa: F401
    except ImportError:
        raise UserError(
            "downstream tasks need lm-evaluation-harness, which is not installed: "
            "pip install 'unlearn-sweep[downstream]' (or drop --downstream)"
        ) from None


def downstream(
    model: torch.nn.Module, tok, tasks: list[str], batch_size: int = 16, limit: int | None = None
) -> dict[str, float]:
    """Each task's metrics as `<task>/<metric>` (e.g. `arc_challenge/acc`), model in memory."""
    require_lm_eval()
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM

    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size)
    results = simple_evaluate(model=lm, tasks=tasks, limit=limit)["results"]
    return {
        f"{task}/{name.split(',')[0]}": float(value)
        for task, metrics in results.items()
        for name, value in metrics.items()
        if isinstance(value, int | float) and not name.split(",")[0].endswith("_stderr")
    }
