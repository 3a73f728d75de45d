"""Privacy and memorisation metrics as open-unlearning computes them: per-sample MIA scores, the
forget-vs-holdout AUC, privleak, extraction strength and exact memorisation
(src/evals/metrics/{mia/*,privacy,memorization}.py; research/open_unlearning.md 2.2-2.3)."""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Sequence

import numpy as np

from unlearn_core.metrics.tofu import OPEN_UNLEARNING_EPS

# privleak's reference AUC when no retain-model log is given (open-unlearning's `ref_value`).
DEFAULT_RETAIN_AUC = 0.5

# Min-K%++ divides by sqrt(max(var, 1e-6)) (min_k_plus_plus.py), i.e. std floored at 1e-3.
MIN_K_PLUS_PLUS_MIN_STD = 1e-3


def mia_loss_scores(avg_loss: np.ndarray) -> np.ndarray:
    """LOSS attack: the mean answer-token NLL (N,). Higher = less likely a member."""
    return np.asarray(avg_loss, dtype=np.float64)


def mia_zlib_scores(avg_loss: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """zlib attack (Carlini et al. 2021): avg NLL / len(zlib.compress(answer text as UTF-8)).
    Higher = less likely a member."""
    sizes = np.array([len(zlib.compress(text.encode("utf-8"))) for text in texts])
    return mia_loss_scores(avg_loss) / sizes


def _min_k_mean(values: np.ndarray, k: float) -> float:
    """-mean of the lowest max(1, floor(k * n)) values (open-unlearning rounds down)."""
    if values.size == 0:
        raise ValueError("a sample has no answer tokens")
    return -float(np.mean(np.sort(values)[: max(1, int(len(values) * k))]))


def mia_min_k_scores(token_logprobs: list[np.ndarray], k: float = 0.4) -> np.ndarray:
    """Min-K% Prob (Shi et al. 2024): -mean of the lowest k-fraction of a sample's answer-token
    log-probs (at least one token, EOS excluded). Higher = less likely a member."""
    return np.array([_min_k_mean(np.asarray(lp, np.float64), k) for lp in token_logprobs])


def mia_min_k_plus_plus_scores(
    token_logprobs: list[np.ndarray],
    mu: list[np.ndarray],
    sigma: list[np.ndarray],
    k: float = 0.4,
) -> np.ndarray:
    """Min-K%++ (Zhang et al. 2024): z_t = (log p(x_t) - mu_t) / sigma_t, with mu_t and sigma_t the
    mean and std of log p under the model's own next-token distribution at position t; then -mean
    of the lowest k-fraction of z. Higher = less likely a member."""
    scores = []
    for lp, m, s in zip(token_logprobs, mu, sigma, strict=True):
        std = np.maximum(np.asarray(s, np.float64), MIN_K_PLUS_PLUS_MIN_STD)
        scores.append(_min_k_mean((np.asarray(lp, np.float64) - m) / std, k))
    return np.array(scores)


def auc(forget_scores: np.ndarray, holdout_scores: np.ndarray) -> float:
    """ROC AUC of the scores with label 0 = forget, 1 = holdout (roc_auc_score in mia/utils.py),
    via the Mann-Whitney rank sum; ties count half. 1 = every forget sample looks more member-like
    than every holdout sample, 0.5 = indistinguishable."""
    forget = np.asarray(forget_scores, dtype=np.float64)
    holdout = np.asarray(holdout_scores, dtype=np.float64)
    from scipy import stats  # loaded here: the command line starts without scipy

    ranks = stats.rankdata(np.concatenate([forget, holdout]))  # ties get their average rank
    n0, n1 = len(forget), len(holdout)
    return float((ranks[n0:].sum() - n1 * (n1 + 1) / 2) / (n0 * n1))


def privleak(auc_model: float, auc_retain: float) -> float:
    """MUSE privleak (Shi et al. 2024) in %: ((1 - auc_model) - (1 - auc_retain)) / (1 - auc_retain)
    * 100, with Min-K% AUCs; the "1 -" converts to MUSE's convention (holdout positive). 0 is
    ideal, negative = under-unlearned (about -100 for a model trained on the forget set), positive
    = over-unlearned. open-unlearning adds 1e-10 to the denominator."""
    score, ref = 1.0 - auc_model, 1.0 - auc_retain
    return (score - ref) / (ref + OPEN_UNLEARNING_EPS) * 100


def _token_pairs(
    pred_ids: list[np.ndarray], label_ids: list[np.ndarray]
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (pred, label) per sample as int arrays, checking equal, non-zero lengths."""
    for i, (pred, label) in enumerate(zip(pred_ids, label_ids, strict=True)):
        pred, label = np.asarray(pred), np.asarray(label)
        if pred.shape != label.shape or pred.ndim != 1 or pred.size == 0:
            raise ValueError(f"sample {i}: predictions {pred.shape} vs labels {label.shape}")
        yield pred, label


def extraction_strength(pred_ids: list[np.ndarray], label_ids: list[np.ndarray]) -> np.ndarray:
    """Per-sample ES = 1 - k/n (Wang et al., ICLR 2025), k the smallest index with
    teacher-forced argmax predictions equal to the labels at every position k..n-1; pass answer
    tokens without the final EOS. Lower = less extractable.

    Trap, kept for parity: open-unlearning searches k only over 0..n-1, so a sample whose last
    token is wrong scores 1/n, not 0 (the floor is 1/n). Equivalently ES = max(t, 1) / n with t the
    length of the trailing run of correct predictions.
    """
    scores = []
    for pred, label in _token_pairs(pred_ids, label_ids):
        wrong = np.flatnonzero(pred != label)
        trailing = len(label) - 1 - wrong[-1] if wrong.size else len(label)
        scores.append(max(trailing, 1) / len(label))
    return np.array(scores, dtype=np.float64)


def exact_memorization(pred_ids: list[np.ndarray], label_ids: list[np.ndarray]) -> np.ndarray:
    """Per-sample fraction of answer tokens where the teacher-forced argmax equals the label
    (Tirumala et al. 2022; Wang et al., ICLR 2025). Lower = less memorised."""
    pairs = _token_pairs(pred_ids, label_ids)
    return np.array([np.mean(pred == label) for pred, label in pairs], dtype=np.float64)
