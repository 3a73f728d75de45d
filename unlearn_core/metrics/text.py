"""ROUGE between ground truths and greedy generations, scored as open-unlearning does
(`eval_text_similarity`): rouge_score with the Porter stemmer; TOFU reports rougeL_recall."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rouge_score import rouge_scorer


@functools.lru_cache(maxsize=1)
def _scorer() -> rouge_scorer.RougeScorer:
    from rouge_score import rouge_scorer  # with nltk, loaded here: the command line starts without

    return rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)


def rouge_scores(ground_truths: Sequence[str], generations: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-sample rouge1_recall, rougeL_recall and rougeL_f1 (N,) each; higher = closer to the
    ground truth (on the forget set, lower = more forgotten). ROUGE-L is LCS-based, not Lsum."""
    if len(ground_truths) != len(generations):
        raise ValueError(f"{len(ground_truths)} ground truths but {len(generations)} generations")
    scores = [
        _scorer().score(target=gt, prediction=gen)
        for gt, gen in zip(ground_truths, generations, strict=True)
    ]
    return {
        "rouge1_recall": np.array([s["rouge1"].recall for s in scores], dtype=np.float64),
        "rougeL_recall": np.array([s["rougeL"].recall for s in scores], dtype=np.float64),
        "rougeL_f1": np.array([s["rougeL"].fmeasure for s in scores], dtype=np.float64),
    }
