"""TOFU likelihood metrics (probability, normalised probability, truth ratio, forget quality, model
utility) as pure functions of per-sample answer losses, exactly as open-unlearning computes them
(src/evals/metrics/{memorization,privacy,utility}.py; research/open_unlearning.md section 2.2)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# open-unlearning adds 1e-10 to the denominators of TR, P_norm and privleak. It changes TR by up to
# 5e-4 (relative) when P(correct) ~ 1e-6 (world facts) and caps TR at 1e10 instead of overflowing;
# kept so that per-sample values equal those in its logs and published tables.
OPEN_UNLEARNING_EPS = 1e-10

# The 9 components of model_utility, in open-unlearning's order (configs/eval/tofu_metrics/
# model_utility.yaml): retain set, real authors (ra), world facts (wf).
MODEL_UTILITY_KEYS = (
    "retain_Q_A_Prob",
    "retain_Q_A_ROUGE",
    "retain_Truth_Ratio",
    "ra_Q_A_Prob_normalised",
    "ra_Q_A_ROUGE",
    "ra_Truth_Ratio",
    "wf_Q_A_Prob_normalised",
    "wf_Q_A_ROUGE",
    "wf_Truth_Ratio",
)


def _losses(avg_loss_true: np.ndarray, avg_loss_wrong: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate shapes (N,) and (N, K) and return both as float64."""
    true = np.asarray(avg_loss_true, dtype=np.float64)
    wrong = np.asarray(avg_loss_wrong, dtype=np.float64)
    if true.ndim != 1 or wrong.ndim != 2 or wrong.shape[0] != true.shape[0]:
        raise ValueError(f"expected shapes (N,) and (N, K), got {true.shape} and {wrong.shape}")
    return true, wrong


def probability(avg_loss: np.ndarray) -> np.ndarray:
    """Per-sample length-normalised answer probability exp(-avg_loss), the geometric mean of the
    token probabilities; avg_loss is the mean answer-token NLL (N,). Forget: lower = more forgotten.
    """
    return np.exp(-np.asarray(avg_loss, dtype=np.float64))


def normalised_probability(avg_loss_true: np.ndarray, avg_loss_wrong: np.ndarray) -> np.ndarray:
    """Per-sample P / (P + sum_k P_k) with length-normalised P of the true answer (N,) and of the K
    wrong options (N, K): `probability_w_options`, used for ra/wf. Higher = prefers the truth."""
    true, wrong = _losses(avg_loss_true, avg_loss_wrong)
    p_true = probability(true)
    return p_true / (p_true + probability(wrong).sum(axis=1) + OPEN_UNLEARNING_EPS)


def truth_ratio(avg_loss_correct: np.ndarray, avg_loss_wrong: np.ndarray) -> np.ndarray:
    """Per-sample TR = exp(-mean_k wrong_loss) / (exp(-correct_loss) + eps), computed in log space.

    The wrong answers' losses are averaged before exponentiating (geometric mean of their
    probabilities). "Correct" is the paraphrased answer for forget/retain, the answer for ra/wf.
    TR < 1: the model prefers the correct answer; TR ~ 1: it cannot tell them apart.
    """
    correct, wrong = _losses(avg_loss_correct, avg_loss_wrong)
    log_denominator = np.logaddexp(-correct, np.log(OPEN_UNLEARNING_EPS))
    return np.exp(-wrong.mean(axis=1) - log_denominator)


def truth_ratio_closer_to_1(tr: np.ndarray) -> float:
    """mean(min(TR, 1/TR)), open-unlearning's forget_truth_ratio: in (0, 1], higher = forgotten."""
    tr = np.asarray(tr, dtype=np.float64)
    with np.errstate(divide="ignore"):  # TR = 0 gives 1/TR = inf and min = 0, as intended
        return float(np.mean(np.minimum(tr, 1.0 / tr)))


def truth_ratio_true_better(tr: np.ndarray) -> float:
    """mean(max(0, 1 - TR)), the retain/ra/wf Truth_Ratio: in [0, 1], higher = knows the truth."""
    return float(np.mean(np.maximum(0.0, 1.0 - np.asarray(tr, dtype=np.float64))))


def forget_quality(tr_model: np.ndarray, tr_retain: np.ndarray) -> float:
    """Two-sided two-sample KS-test p-value between the unlearned model's and the retain model's
    per-sample forget-set truth ratios (`ks_test`). Higher = closer to the retain model.

    scipy's 'auto' method is exact at TOFU sizes; complete separation floors at 2 / C(2n, n):
    1.9e-23, 1.94e-119, 1.06e-239 for forget01/05/10.
    """
    from scipy import stats  # loaded here: the command line starts without scipy

    return float(stats.ks_2samp(tr_model, tr_retain).pvalue)


def model_utility(values: Mapping[str, float]) -> float:
    """Harmonic mean of the 9 MODEL_UTILITY_KEYS (`hm_aggregate`); other keys are ignored.
    Higher is better; any zero component makes it 0."""
    missing = [key for key in MODEL_UTILITY_KEYS if key not in values]
    if missing:
        raise ValueError(f"model_utility needs {', '.join(missing)}")
    from scipy import stats

    return float(stats.hmean([values[key] for key in MODEL_UTILITY_KEYS]))
