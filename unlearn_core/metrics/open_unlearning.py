"""Reads open-unlearning `TOFU_EVAL.json` logs into per-sample arrays and recomputes the summary
from them (never from the stored agg_value), so our metric code is checked against the reference
implementation's own numbers and published logs can be re-scored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from unlearn_core.errors import UserError
from unlearn_core.metrics import privacy, tofu

SPLITS = ("forget", "retain", "ra", "wf")
# Logs recompute_summary needs; each holds value_by_index {idx: {"prob", "avg_loss"}} (PERT: lists)
# or {idx: {"rouge1_recall", "rougeL_recall", "rougeL_f1", ...}}.
PROB_LOGS = (
    "forget_Q_A_Prob",
    "forget_Q_A_PARA_Prob",
    "forget_Q_A_PERT_Prob",
    "retain_Q_A_Prob",
    "retain_Q_A_PARA_Prob",
    "retain_Q_A_PERT_Prob",
    "ra_Q_A_Prob",
    "ra_Q_A_PERT_Prob",
    "wf_Q_A_Prob",
    "wf_Q_A_PERT_Prob",
)
ROUGE_LOGS = ("forget_Q_A_ROUGE", "retain_Q_A_ROUGE", "ra_Q_A_ROUGE", "wf_Q_A_ROUGE")
ROUGE_FIELDS = ("rouge1_recall", "rougeL_recall", "rougeL_f1")
# Optional logs, read when present: {idx: {"score"}}, and MIA {"forget", "holdout", "auc"}.
SCORE_LOGS = ("forget_truth_ratio", "extraction_strength", "exact_memorization")
MIA_LOGS = ("mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus")


def _load(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"open-unlearning eval log not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err})") from None


def _column(section: dict[str, Any], field: str, where: str) -> tuple[list[int], np.ndarray]:
    """value_by_index[*][field] in index order, as float64 (N,) or (N, K). open-unlearning logs
    None for a sample with no answer tokens; it becomes NaN and is dropped when aggregating."""
    try:
        items = sorted(section["value_by_index"].items(), key=lambda item: int(item[0]))
        values = [np.nan if entry is None else entry[field] for _, entry in items]
        width = max((len(v) for v in values if isinstance(v, list)), default=0)
        if width:  # a list per sample (perturbed answers); a None sample becomes a row of NaN
            values = [v if isinstance(v, list) else [np.nan] * width for v in values]
        return [int(index) for index, _ in items], np.array(values, dtype=np.float64)
    except (KeyError, TypeError, ValueError):
        raise UserError(f"{where}: missing or malformed value_by_index field '{field}'") from None


def read_tofu_eval(path: str | Path) -> dict[str, np.ndarray | float]:
    """Per-sample values of an open-unlearning TOFU_EVAL.json, in sample-index order.

    Keys: `<log>_avg_loss` for PROB_LOGS ((N, K) for *_PERT_Prob), `<log>_<field>` for ROUGE_LOGS x
    ROUGE_FIELDS, `<log>` (per-sample score) for SCORE_LOGS, and `<mia>_forget`, `<mia>_holdout`,
    `<mia>_auc` (stored float) for MIA_LOGS. PROB_LOGS and ROUGE_LOGS are required (UserError if
    absent); the others are read when present. Logs of one split must cover the same indices.
    """
    log, out = _load(path), {}
    missing = [key for key in PROB_LOGS + ROUGE_LOGS if key not in log]
    if missing:
        raise UserError(f"{path}: no {', '.join(missing)} (not a complete TOFU_EVAL.json?)")
    indices: dict[str, list[int]] = {}
    for key in PROB_LOGS:
        index, out[f"{key}_avg_loss"] = _column(log[key], "avg_loss", f"{path}: {key}")
        split = key.split("_")[0]
        if indices.setdefault(split, index) != index:
            raise UserError(f"{path}: {key} covers other sample indices than {split}_Q_A_Prob")
    for key in ROUGE_LOGS:
        for field in ROUGE_FIELDS:
            out[f"{key}_{field}"] = _column(log[key], field, f"{path}: {key}")[1]
    for key in SCORE_LOGS:
        if key in log:
            out[key] = _column(log[key], "score", f"{path}: {key}")[1]
    for key in MIA_LOGS:
        if key in log:
            for side in ("forget", "holdout"):
                section = log[key].get(side, {})
                out[f"{key}_{side}"] = _column(section, "score", f"{path}: {key}.{side}")[1]
            stored_auc = log[key].get("auc")
            out[f"{key}_auc"] = np.nan if stored_auc is None else float(stored_auc)
    return out


def _present(values: np.ndarray) -> np.ndarray:
    """Drop NaN samples (None in the log), as open-unlearning filters None before aggregating."""
    return values[~np.isnan(values)]


def _mean(values: np.ndarray) -> float:
    return float(np.mean(_present(values)))


def split_truth_ratio(values: dict[str, np.ndarray | float], split: str) -> np.ndarray:
    """Per-sample TR of one split: paraphrased answer (forget, retain) or answer (ra, wf) vs the
    perturbed answers, from a read_tofu_eval dict."""
    correct = f"{split}_Q_A_PARA_Prob" if split in ("forget", "retain") else f"{split}_Q_A_Prob"
    return tofu.truth_ratio(
        values[f"{correct}_avg_loss"], values[f"{split}_Q_A_PERT_Prob_avg_loss"]
    )


def _likelihood_summary(values: dict[str, np.ndarray | float]) -> dict[str, float]:
    """forget_* likelihood/ROUGE metrics, the 9 model-utility components and model_utility."""
    summary = {
        "forget_truth_ratio": tofu.truth_ratio_closer_to_1(
            _present(split_truth_ratio(values, "forget"))
        ),
        "forget_Q_A_Prob": _mean(tofu.probability(values["forget_Q_A_Prob_avg_loss"])),
        "forget_Q_A_ROUGE": _mean(values["forget_Q_A_ROUGE_rougeL_recall"]),
        "retain_Q_A_Prob": _mean(tofu.probability(values["retain_Q_A_Prob_avg_loss"])),
    }
    for split in ("retain", "ra", "wf"):
        tr = _present(split_truth_ratio(values, split))
        summary[f"{split}_Truth_Ratio"] = tofu.truth_ratio_true_better(tr)
        summary[f"{split}_Q_A_ROUGE"] = _mean(values[f"{split}_Q_A_ROUGE_rougeL_recall"])
    for split in ("ra", "wf"):
        summary[f"{split}_Q_A_Prob_normalised"] = _mean(
            tofu.normalised_probability(
                values[f"{split}_Q_A_Prob_avg_loss"], values[f"{split}_Q_A_PERT_Prob_avg_loss"]
            )
        )
    summary["model_utility"] = tofu.model_utility(summary)
    return summary


def _mia_auc(values: dict[str, np.ndarray | float], key: str) -> float:
    return privacy.auc(_present(values[f"{key}_forget"]), _present(values[f"{key}_holdout"]))


def recompute_summary(
    eval_json_path: str | Path, retain_eval_json_path: str | Path | None = None
) -> dict[str, float]:
    """The TOFU summary of an open-unlearning eval log, recomputed from its per-sample values.

    Always: forget_truth_ratio, forget_Q_A_Prob, forget_Q_A_ROUGE, model_utility and its 9
    components. When the log has them: extraction_strength, exact_memorization, mia_* AUCs and
    privleak. forget_quality needs the retain model's log (evaluated on the same forget split) and
    is left out without it, where open-unlearning stores None. privleak's reference is the retain
    log's recomputed Min-K% AUC, or 0.5 without a retain log (open-unlearning's `ref_value`).
    """
    values = read_tofu_eval(eval_json_path)
    summary = _likelihood_summary(values)
    for key in ("extraction_strength", "exact_memorization"):
        if key in values:
            summary[key] = _mean(values[key])
    for key in MIA_LOGS:
        if f"{key}_forget" in values:
            summary[key] = _mia_auc(values, key)
    retain = None if retain_eval_json_path is None else read_tofu_eval(retain_eval_json_path)
    if retain is not None:
        tr_model = _present(split_truth_ratio(values, "forget"))
        tr_retain = _present(split_truth_ratio(retain, "forget"))
        if len(tr_model) != len(tr_retain):
            raise UserError(
                f"{retain_eval_json_path} has {len(tr_retain)} forget samples, "
                f"{eval_json_path} has {len(tr_model)}: evaluate both on the same forget split"
            )
        summary["forget_quality"] = tofu.forget_quality(tr_model, tr_retain)
    if "mia_min_k" in summary:
        if retain is not None and "mia_min_k_forget" not in retain:
            raise UserError(f"{retain_eval_json_path}: no mia_min_k, needed for privleak")
        reference = privacy.DEFAULT_RETAIN_AUC if retain is None else _mia_auc(retain, "mia_min_k")
        summary["privleak"] = privacy.privleak(summary["mia_min_k"], reference)
    return summary


def read_mia(path: str | Path, key: str = "mia_min_k") -> tuple[np.ndarray, np.ndarray]:
    """Per-sample forget and holdout scores of one MIA log (`mia_min_k`, ...) of any
    open-unlearning eval JSON (TOFU_EVAL.json, MUSE_EVAL.json), NaN samples dropped."""
    log = _load(path)
    if key not in log:
        raise UserError(f"{path}: no {key} log (needed for privleak)")
    return tuple(
        _present(_column(log[key].get(side, {}), "score", f"{path}: {key}.{side}")[1])
        for side in ("forget", "holdout")
    )
