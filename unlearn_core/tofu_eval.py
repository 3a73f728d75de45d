"""The TOFU evaluation suite: per-sample values for forget, retain, real authors, world facts and
holdout, then open-unlearning's aggregates (forget_quality, model_utility, MIA, privleak, ...)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from unlearn_core.data.format import PromptFormat
from unlearn_core.data.tofu import load_config, split_configs
from unlearn_core.errors import UserError
from unlearn_core.evaluate import EvalConfig, SeqStats, generate_answers, score_sequences
from unlearn_core.metrics import privacy, text, tofu
from unlearn_core.metrics.open_unlearning import read_tofu_eval, split_truth_ratio


@dataclass(frozen=True)
class TofuEvalData:
    """Rows of the evaluation configs for one forget split."""

    split: str  # forget01 | forget05 | forget10
    forget: list[dict]  # forgetXX_perturbed
    retain: list[dict]  # retain_perturbed
    real_authors: list[dict]  # real_authors_perturbed
    world_facts: list[dict]  # world_facts_perturbed
    holdout: list[dict]  # holdoutXX


@dataclass(frozen=True)
class RetainReference:
    """What the retain model contributes: its per-sample forget truth ratios and Min-K% AUC."""

    split: str
    forget_truth_ratio: np.ndarray
    mia_min_k: float

    def to_json(self) -> dict:
        return {
            "split": self.split,
            "forget_truth_ratio": self.forget_truth_ratio.tolist(),
            "mia_min_k": self.mia_min_k,
        }

    @classmethod
    def from_json(cls, d: dict) -> RetainReference:
        return cls(d["split"], np.asarray(d["forget_truth_ratio"]), float(d["mia_min_k"]))

    @classmethod
    def load(cls, path: Path, split: str) -> RetainReference:
        ref = cls.from_json(json.loads(Path(path).read_text()))
        if ref.split != split:
            raise UserError(f"reference {path} is for {ref.split}, not {split}")
        return ref


def load_eval(source: str, split: str) -> TofuEvalData:
    """The evaluation configs of a forget split (local folder or hub id)."""
    c = split_configs(split)
    return TofuEvalData(
        split=split,
        forget=load_config(source, c["forget_perturbed"]),
        retain=load_config(source, c["retain_perturbed"]),
        real_authors=load_config(source, c["real_authors"]),
        world_facts=load_config(source, c["world_facts"]),
        holdout=load_config(source, c["holdout"]),
    )


def _score(model, tok, fmt, rows, key, cfg) -> SeqStats:
    return score_sequences(model, tok, fmt, [(r["question"], r[key]) for r in rows], cfg)


def _perturbed(model, tok, fmt, rows, cfg) -> np.ndarray:
    """avg_loss of every perturbed answer, (N, K)."""
    k = len(rows[0]["perturbed_answer"])
    pairs = [(r["question"], p) for r in rows for p in r["perturbed_answer"]]
    return score_sequences(model, tok, fmt, pairs, cfg).avg_loss.reshape(len(rows), k)


def _generation(model, tok, fmt, rows, cfg) -> dict:
    gens = generate_answers(model, tok, fmt, [r["question"] for r in rows], cfg)
    scores = text.rouge_scores([r["answer"] for r in rows], gens)
    return {"generation": gens, **{k: v for k, v in scores.items()}}


def _mia(stats: SeqStats, texts: list[str]) -> dict[str, np.ndarray]:
    """LOSS and zlib use the avg loss with EOS; Min-K% and Min-K%++ drop the EOS token."""
    no_eos = [x[:-1] for x in stats.token_logprobs]
    return {
        "mia_loss": privacy.mia_loss_scores(stats.avg_loss),
        "mia_zlib": privacy.mia_zlib_scores(stats.avg_loss, texts),
        "mia_min_k": privacy.mia_min_k_scores(no_eos),
        "mia_min_k_plus_plus": privacy.mia_min_k_plus_plus_scores(
            no_eos, [x[:-1] for x in stats.token_mu], [x[:-1] for x in stats.token_sigma]
        ),
    }


def _answer_split(model, tok, fmt, rows, cfg, paraphrase: bool) -> dict:
    """avg_loss of the answer, the paraphrased answer (forget/retain) and every perturbed answer."""
    cfg = dataclasses.replace(cfg, token_stats=False)  # losses only: no per-token statistics
    d = {
        "answer_avg_loss": _score(model, tok, fmt, rows, "answer", cfg).avg_loss,
        "pert_avg_loss": _perturbed(model, tok, fmt, rows, cfg),
    }
    if paraphrase:
        d["para_avg_loss"] = _score(model, tok, fmt, rows, "paraphrased_answer", cfg).avg_loss
    return d


def per_sample(
    model: torch.nn.Module,
    tok,
    fmt: PromptFormat,
    data: TofuEvalData,
    cfg: EvalConfig,
    progress: bool = False,
) -> dict[str, dict[str, np.ndarray | list]]:
    """Run the model once per split; every value is per sample."""
    splits = {
        "forget": (data.forget, True),
        "retain": (data.retain, True),
        "ra": (data.real_authors, False),
        "wf": (data.world_facts, False),
    }
    bar = tqdm(total=6 + 4 * cfg.generate, desc="evaluate", leave=False, disable=not progress)
    out: dict[str, dict] = {}
    for name, (rows, para) in splits.items():
        out[name] = _answer_split(model, tok, fmt, rows, cfg, para)
        bar.update(1)
    fa = _score(model, tok, fmt, data.forget, "answer", cfg)
    f = out["forget"]
    # ES and EM leave out the final EOS (open-unlearning).
    preds, labels = [p[:-1] for p in fa.pred_ids], [y[:-1] for y in fa.label_ids]
    f["extraction_strength"] = privacy.extraction_strength(preds, labels)
    f["exact_memorization"] = privacy.exact_memorization(preds, labels)
    f.update(_mia(fa, [r["answer"] for r in data.forget]))
    bar.update(1)
    out["holdout"] = _mia(
        _score(model, tok, fmt, data.holdout, "answer", cfg), [r["answer"] for r in data.holdout]
    )
    bar.update(1)
    if cfg.generate:
        for name, (rows, _) in splits.items():
            out[name].update(_generation(model, tok, fmt, rows, cfg))
            bar.update(1)
    bar.close()
    return out


def aggregate(ps: dict, reference: RetainReference | None) -> dict[str, float]:
    """open-unlearning's TOFU numbers from per-sample values (pure; no model)."""
    f, r = ps["forget"], ps["retain"]
    f_tr = tofu.truth_ratio(f["para_avg_loss"], f["pert_avg_loss"])
    m = {
        "forget_truth_ratio": tofu.truth_ratio_closer_to_1(f_tr),
        "forget_Q_A_Prob": float(tofu.probability(f["answer_avg_loss"]).mean()),
        "extraction_strength": float(np.mean(f["extraction_strength"])),
        "exact_memorization": float(np.mean(f["exact_memorization"])),
        "retain_Q_A_Prob": float(tofu.probability(r["answer_avg_loss"]).mean()),
        "retain_Truth_Ratio": tofu.truth_ratio_true_better(
            tofu.truth_ratio(r["para_avg_loss"], r["pert_avg_loss"])
        ),
    }
    for name in ("ra", "wf"):
        d = ps[name]
        m[f"{name}_Q_A_Prob_normalised"] = float(
            tofu.normalised_probability(d["answer_avg_loss"], d["pert_avg_loss"]).mean()
        )
        m[f"{name}_Truth_Ratio"] = tofu.truth_ratio_true_better(
            tofu.truth_ratio(d["answer_avg_loss"], d["pert_avg_loss"])
        )
    for key in ("mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_plus_plus"):
        m[key] = privacy.auc(f[key], ps["holdout"][key])
    if "rougeL_recall" in f:
        for name in ("forget", "retain", "ra", "wf"):
            m[f"{name}_Q_A_ROUGE"] = float(np.mean(ps[name]["rougeL_recall"]))
        m["model_utility"] = tofu.model_utility(m)
    if reference is not None:
        m["forget_quality"] = tofu.forget_quality(f_tr, reference.forget_truth_ratio)
        m["privleak"] = privacy.privleak(m["mia_min_k"], reference.mia_min_k)
    return m


def reference_from(ps: dict, split: str) -> RetainReference:
    """The retain model's reference values from its own per-sample evaluation."""
    f = ps["forget"]
    tr = tofu.truth_ratio(f["para_avg_loss"], f["pert_avg_loss"])
    return RetainReference(split, tr, privacy.auc(f["mia_min_k"], ps["holdout"]["mia_min_k"]))


def reference_from_log(path: str, split: str) -> RetainReference:
    """The retain model's reference from an open-unlearning TOFU_EVAL.json."""
    values = read_tofu_eval(path)
    if "mia_min_k_forget" not in values:
        raise UserError(f"retain logs {path} have no mia_min_k (needed by privleak)")
    auc = privacy.auc(values["mia_min_k_forget"], values["mia_min_k_holdout"])
    return RetainReference(split, split_truth_ratio(values, "forget"), auc)


def check_reference(reference: RetainReference, data: TofuEvalData) -> None:
    """forget_quality compares truth ratios sample by sample: the counts must match."""
    n_ref, n = len(reference.forget_truth_ratio), len(data.forget)
    if n_ref != n:
        raise UserError(
            f"the retain reference has {n_ref} forget "
            f"samples but {data.split} has {n}: one for another split?"
        )


def to_jsonable(ps: dict) -> dict:
    """Per-sample values as plain lists, for the results JSON."""
    return {
        split: {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in d.items()}
        for split, d in ps.items()
    }
