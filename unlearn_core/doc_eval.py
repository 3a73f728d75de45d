"""The MUSE and DUSK evaluation suites: run a model once over each evaluation set, keeping
per-sample values (generations and their ROUGE, token log-probs and Min-K% scores);
`unlearn_core.metrics.documents` turns them into the benchmark's numbers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from unlearn_core.data import documents as D
from unlearn_core.errors import UserError
from unlearn_core.evaluate import EvalConfig, generate_from, score_encoded
from unlearn_core.metrics import documents as M
from unlearn_core.metrics import privacy, text


@dataclass(frozen=True)
class DocParams:
    """A document benchmark's evaluation lengths: MUSE/DUSK's for the hub data sets, shorter for
    the built-in tiny ones (their models hold 256 positions)."""

    chunk_tokens: int = 2048  # unlearning chunks; DUSK's MIA chunks; MUSE's privleak truncation
    qa_new_tokens: int = 32  # knowmem / DUSK QA: greedy tokens per answer
    verbatim_new_tokens: int = 128  # verbmem: greedy tokens per continuation
    icl_shots: int | None = None  # few-shot examples per QA prompt (None: all of the icl split)


@dataclass(frozen=True)
class DocEvalData:
    family: str  # muse | dusk
    rows: dict[str, list[dict]]  # evaluation set name -> rows
    params: DocParams


def load_eval(family: str, source: str, params: DocParams) -> DocEvalData:
    """The evaluation sets of a MUSE or DUSK data set (hub id or local copy)."""

    def rows(config: str, split: str) -> list[dict]:
        return D.load(family, source, config, split)

    if family == "muse":
        sets = {
            "forget_knowmem": rows("knowmem", "forget_qa"),
            "retain_knowmem": rows("knowmem", "retain_qa"),
            "forget_icl": rows("knowmem", "forget_qa_icl"),
            "retain_icl": rows("knowmem", "retain_qa_icl"),
            "forget_verbmem": rows("verbmem", "forget"),
            "privleak_forget": rows("privleak", "forget"),
            "privleak_holdout": rows("privleak", "holdout"),
        }
    else:
        sets = {
            "verbatim": rows("eval_verbatim", "eval"),
            "general_qa": rows("eval_general_qa", "eval"),
            "specific_forget_qa": rows("eval_specific_forget_qa", "eval"),
            "specific_retain_qa": rows("eval_specific_retain_qa", "eval"),
            "icl": rows("eval_icl", "eval"),
            "forget_doc": rows("raw", "forget_chronological"),
            "retain_docs": [r for s in D.DUSK_RETAIN for r in rows("raw", s)],
            "holdout_doc": rows("eval_holdout", "eval"),
        }
    return DocEvalData(family, sets, params)


def _qa(model, tok, rows: list[dict], shots: list[dict], p: DocParams, cfg: EvalConfig) -> dict:
    shots = shots[: p.icl_shots] if p.icl_shots is not None else shots
    prompts = [
        [
            tok.bos_token_id,
            *tok(D.few_shot_prompt(shots, r["question"]), add_special_tokens=False)["input_ids"],
        ]
        for r in rows
    ]
    gens = [
        D.cut_at_stop(g)
        for g in generate_from(model, tok, prompts, p.qa_new_tokens, cfg.gen_batch_size)
    ]
    return {"generation": gens, **text.rouge_scores([r["answer"] for r in rows], gens)}


def _continuation(model, tok, rows: list[dict], p: DocParams, cfg: EvalConfig) -> dict:
    prompts = [
        [tok.bos_token_id, *tok(r["prompt"], add_special_tokens=False)["input_ids"]] for r in rows
    ]
    gens = generate_from(model, tok, prompts, p.verbatim_new_tokens, cfg.gen_batch_size)
    out = {"generation": gens, **text.rouge_scores([r["gt"] for r in rows], gens)}
    enc = [D.encode_continuation(tok, r["prompt"], r["gt"], p.chunk_tokens) for r in rows]
    stats = score_encoded(model, enc, tok.pad_token_id, cfg)
    out["extraction_strength"] = privacy.extraction_strength(stats.pred_ids, stats.label_ids)
    return out


def _mia(model, tok, enc: list[dict], cfg: EvalConfig) -> dict:
    stats = score_encoded(model, enc, tok.pad_token_id, cfg)
    return {
        "mia_min_k": privacy.mia_min_k_scores(stats.token_logprobs),
        "mia_min_k_plus_plus": privacy.mia_min_k_plus_plus_scores(
            stats.token_logprobs, stats.token_mu, stats.token_sigma
        ),
    }


def per_sample(model: torch.nn.Module, tok, data: DocEvalData, cfg: EvalConfig) -> dict:
    """Every per-sample value of the suite; QA and continuation sets need cfg.generate."""
    p, s, out = data.params, data.rows, {}
    if data.family == "muse":
        for side in ("privleak_forget", "privleak_holdout"):
            enc = [D.encode_text(tok, r["text"], p.chunk_tokens) for r in s[side]]
            out[side] = _mia(model, tok, enc, cfg)
        if cfg.generate:
            out["forget_verbmem"] = _continuation(model, tok, s["forget_verbmem"], p, cfg)
            for side in ("forget", "retain"):
                out[f"{side}_knowmem"] = _qa(
                    model, tok, s[f"{side}_knowmem"], s[f"{side}_icl"], p, cfg
                )
        return out
    for name, doc in (
        ("forget", "forget_doc"),
        ("retain", "retain_docs"),
        ("holdout", "holdout_doc"),
    ):
        enc = D.chunk(tok, [r["text"] for r in s[doc]], p.chunk_tokens)
        out[f"{name}_chunks"] = _mia(model, tok, enc, cfg)
    if cfg.generate:
        out["verbatim"] = _continuation(model, tok, s["verbatim"], p, cfg)
        for qa in ("general_qa", "specific_forget_qa", "specific_retain_qa"):
            out[qa] = _qa(model, tok, s[qa], s["icl"], p, cfg)
    return out


DIVIDES_BY = ("mia_min_k_plus_plus", "retain_mia_min_k_plus_plus")  # DUSK's relative metrics


@dataclass(frozen=True)
class DocReference:
    """The retrain model's AUCs that privleak (and DUSK's retain deviation) are relative to."""

    benchmark: str
    split: str
    values: dict[str, float]
    n_forget: int  # forget samples the AUC was computed on: a log of another split differs

    def __post_init__(self) -> None:
        zero = [k for k in DIVIDES_BY if self.values.get(k) == 0]
        if zero:
            raise UserError(
                f"the retrain model's {zero[0]} AUC is 0 (over {self.n_forget} forget "
                "chunks): DUSK's privleak and retain deviation divide by it; too few "
                "chunks to compare against, use more documents or shorter chunks"
            )

    def to_json(self) -> dict:
        return {
            "benchmark": self.benchmark,
            "split": self.split,
            "values": self.values,
            "n_forget": self.n_forget,
        }

    @classmethod
    def load(cls, path: Path, benchmark: str, split: str) -> DocReference:
        d = json.loads(Path(path).read_text())
        if "values" not in d:
            raise UserError(f"reference {path} is not a {benchmark} reference (no 'values')")
        ref = cls(d["benchmark"], d["split"], d["values"], d["n_forget"])
        if (ref.benchmark, ref.split) != (benchmark, split):
            raise UserError(
                f"reference {path} is for {ref.benchmark} {ref.split}, not {benchmark} {split}"
            )
        return ref


# The AUCs a retrain model's reference keeps, per family (what privleak & co. are relative to).
REFERENCE_KEYS = {
    "muse": ("mia_min_k",),
    "dusk": ("mia_min_k_plus_plus", "retain_mia_min_k_plus_plus"),
}


def reference_from(ps: dict, family: str, benchmark: str, split: str) -> DocReference:
    """The retrain model's reference from its own per-sample values."""
    m = aggregate(ps, family, None)
    forget = ps["privleak_forget" if family == "muse" else "forget_chunks"]
    n = len(next(iter(forget.values())))
    return DocReference(benchmark, split, {k: m[k] for k in REFERENCE_KEYS[family]}, n)


def reference_from_muse_log(
    path: str | Path, benchmark: str, split: str, n_forget: int
) -> DocReference:
    """The retrain AUC from an open-unlearning MUSE_EVAL.json (its mia_min_k per-sample forget and
    holdout scores, recomputed); the forget sample count must match this evaluation's."""
    from unlearn_core.metrics.open_unlearning import read_mia

    forget, holdout = read_mia(path, "mia_min_k")
    if len(forget) != n_forget:
        raise UserError(
            f"retain logs {path} hold {len(forget)} privleak forget samples but "
            f"{benchmark} {split} has {n_forget}: a log of another split?"
        )
    return DocReference(benchmark, split, {"mia_min_k": privacy.auc(forget, holdout)}, n_forget)


def aggregate(ps: dict, family: str, reference: DocReference | None) -> dict[str, float]:
    """The suite's numbers (generation-based ones only when ps holds generations)."""
    values = None if reference is None else reference.values
    if family == "muse":
        return M.muse_summary(ps, None if values is None else values["mia_min_k"])
    return M.dusk_summary(ps, values)


def n_forget(data: DocEvalData) -> int:
    """How many forget samples the privleak AUC uses (to match a reference against)."""
    return len(data.rows["privleak_forget"]) if data.family == "muse" else -1


def to_jsonable(ps: dict) -> dict:
    return {
        k: {f: (v.tolist() if isinstance(v, np.ndarray) else v) for f, v in d.items()}
        for k, d in ps.items()
    }
