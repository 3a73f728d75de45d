"""MUSE and DUSK aggregates from per-sample values (pure; no model).

MUSE (open-unlearning's MUSE evaluator, research/open_unlearning.md 2.3): knowmem and verbmem are
mean ROUGE-L F1 on a 0-1 scale; privleak is privacy.privleak on the Min-K% (k 0.4) AUC of privleak
forget vs holdout, relative to the retrain model's AUC. Utility is knowmem on retain.
DUSK (research/seed_methods.md 3.4): QA sets are mean ROUGE-L recall; verbatim memorisation is
ROUGE-L F1 (recall also kept); privleak = (AUC - AUC_retrain) / AUC_retrain x 100 with the Min-K%++
(k 0.4) AUC of forget vs holdout chunks; retain deviation = |AUC_r - AUC_r,retrain| / AUC_r,retrain
x 100 with the AUC of retain vs holdout chunks. AUCs here use privacy.auc (label 0 = forget or
retain, 1 = holdout).
"""

from __future__ import annotations

import numpy as np

from unlearn_core.metrics import privacy


def mean(values: np.ndarray) -> float:
    return float(np.mean(np.asarray(values, dtype=np.float64)))


def harmonic_mean(values: list[float]) -> float:
    """0 when any value is 0 (one collapsed ability is a collapsed model)."""
    v = np.asarray(values, dtype=np.float64)
    return 0.0 if np.any(v <= 0) else float(len(v) / np.sum(1.0 / v))


def dusk_privleak(auc_model: float, auc_retrain: float) -> float:
    """DUSK's privleak in %: (AUC - AUC_retrain) / AUC_retrain x 100; 0 ideal."""
    if auc_retrain <= 0:
        raise ValueError("DUSK privleak is relative to the retrain AUC, which must be > 0")
    return (auc_model - auc_retrain) / auc_retrain * 100


def retain_deviation(auc_retain_model: float, auc_retain_retrain: float) -> float:
    """DUSK's retain deviation in %: |AUC_r - AUC_r,retrain| / AUC_r,retrain x 100; 0 ideal."""
    if auc_retain_retrain <= 0:
        raise ValueError("retain deviation is relative to the retrain AUC, which must be > 0")
    return abs(auc_retain_model - auc_retain_retrain) / auc_retain_retrain * 100


def muse_summary(ps: dict, retrain_auc: float | None) -> dict[str, float]:
    """MUSE's numbers from per-sample values (doc_eval.per_sample); the generation-based ones only
    when ps holds generations, privleak only with the retrain model's AUC."""
    m = {
        "mia_min_k": privacy.auc(
            ps["privleak_forget"]["mia_min_k"], ps["privleak_holdout"]["mia_min_k"]
        )
    }
    if "forget_knowmem" in ps:
        m |= {
            "forget_knowmem_ROUGE": mean(ps["forget_knowmem"]["rougeL_f1"]),
            "retain_knowmem_ROUGE": mean(ps["retain_knowmem"]["rougeL_f1"]),
            "forget_verbmem_ROUGE": mean(ps["forget_verbmem"]["rougeL_f1"]),
            "extraction_strength": mean(ps["forget_verbmem"]["extraction_strength"]),
        }
        m["model_utility"] = m["retain_knowmem_ROUGE"]
    if retrain_auc is not None:
        m["privleak"] = privacy.privleak(m["mia_min_k"], retrain_auc)
    return m


def dusk_summary(ps: dict, retrain: dict[str, float] | None) -> dict[str, float]:
    """DUSK's numbers (generation-based ones only when ps holds generations); `retrain` holds the
    retrain model's mia_min_k_plus_plus (forget vs holdout) and retain_mia_min_k_plus_plus (retain
    vs holdout) AUCs."""
    holdout = ps["holdout_chunks"]["mia_min_k_plus_plus"]
    m = {
        "mia_min_k_plus_plus": privacy.auc(ps["forget_chunks"]["mia_min_k_plus_plus"], holdout),
        "retain_mia_min_k_plus_plus": privacy.auc(
            ps["retain_chunks"]["mia_min_k_plus_plus"], holdout
        ),
    }
    if "verbatim" in ps:
        m |= {
            "forget_verbmem_ROUGE": mean(ps["verbatim"]["rougeL_f1"]),
            "forget_verbmem_ROUGE_recall": mean(ps["verbatim"]["rougeL_recall"]),
            "forget_specific_ROUGE": mean(ps["specific_forget_qa"]["rougeL_recall"]),
            "shared_ROUGE": mean(ps["general_qa"]["rougeL_recall"]),
            "retain_specific_ROUGE": mean(ps["specific_retain_qa"]["rougeL_recall"]),
        }
        m["model_utility"] = harmonic_mean([m["shared_ROUGE"], m["retain_specific_ROUGE"]])
    if retrain is not None:
        m["privleak"] = dusk_privleak(m["mia_min_k_plus_plus"], retrain["mia_min_k_plus_plus"])
        m["retain_deviation"] = retain_deviation(
            m["retain_mia_min_k_plus_plus"], retrain["retain_mia_min_k_plus_plus"]
        )
    return m
