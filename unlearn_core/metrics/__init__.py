"""Registry of the aggregate TOFU metrics this project reports, keyed as open-unlearning names them,
each with its direction. The maths lives in `tofu`, `text` and `privacy`; log reading in
`open_unlearning`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """How to read one aggregate: `higher_is_better` is None when a target value is ideal."""

    higher_is_better: bool | None
    description: str


# Directions are for an unlearned model. TR = truth ratio (tofu.truth_ratio); "ra" = real authors,
# "wf" = world facts. MIA AUCs: 1 = forget set looks memorised, the target is the retain model's
# AUC (about 0.4-0.5 for TOFU), below it is over-unlearning; hence None.
METRICS: dict[str, Metric] = {
    "forget_quality": Metric(True, "KS p-value, forget TRs vs the retain model's TRs"),
    "forget_truth_ratio": Metric(True, "mean min(TR, 1/TR) on forget; 1 = fully forgotten"),
    "forget_Q_A_Prob": Metric(False, "mean length-normalised P(answer) on forget"),
    "forget_Q_A_ROUGE": Metric(False, "mean ROUGE-L recall of generations on forget"),
    "model_utility": Metric(True, "harmonic mean of tofu.MODEL_UTILITY_KEYS"),
    "retain_Q_A_Prob": Metric(True, "mean length-normalised P(answer) on retain"),
    "retain_Q_A_ROUGE": Metric(True, "mean ROUGE-L recall of generations on retain"),
    "retain_Truth_Ratio": Metric(True, "mean max(0, 1 - TR) on retain"),
    "ra_Q_A_Prob_normalised": Metric(True, "mean P(answer) / P(all 4 options), ra"),
    "ra_Q_A_ROUGE": Metric(True, "mean ROUGE-L recall of generations, ra"),
    "ra_Truth_Ratio": Metric(True, "mean max(0, 1 - TR), ra"),
    "wf_Q_A_Prob_normalised": Metric(True, "mean P(answer) / P(all 4 options), wf"),
    "wf_Q_A_ROUGE": Metric(True, "mean ROUGE-L recall of generations, wf"),
    "wf_Truth_Ratio": Metric(True, "mean max(0, 1 - TR), wf"),
    "extraction_strength": Metric(False, "mean teacher-forced extraction strength on forget"),
    "exact_memorization": Metric(False, "mean fraction of forget tokens the argmax hits"),
    "mia_loss": Metric(None, "LOSS attack AUC; target = retain model's AUC"),
    "mia_zlib": Metric(None, "zlib attack AUC; target = retain model's AUC"),
    "mia_min_k": Metric(None, "Min-K% (k=0.4) AUC; target = retain model's AUC"),
    "mia_min_k_plus_plus": Metric(None, "Min-K%++ (k=0.4) AUC; target = retain model's"),
    "privleak": Metric(None, "Min-K% AUC rel. to retain model, %; 0 ideal, <0 under-unlearned"),
}
