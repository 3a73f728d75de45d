"""The MUSE and DUSK evaluation suites: run a model once over each evaluation set, keeping
per-sample values (generations and their ROUGE, token log-probs and Min-K% scores);
`unlearn_core.metrics.documents` turns them into the benchmark's numbers."""

from __future__ import annotations

import json
from collections.abc import Callable
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
class Documents:
    """What differs between the document benchmarks' suites: their evaluation sets and which of
    them each measurement reads (the MUSE and DUSK records below)."""

    schema: str  # documents.SCHEMAS key: the data set's configs and fields
    sets: dict[str, tuple[tuple[str, str], ...]]  # evaluation set -> the (config, split)s it pools
    mia: dict[str, str]  # per-sample entry -> the set whose Min-K% scores it holds
    mia_chunks: bool  # MIA sets are documents joined and chunked (DUSK), else one text a sample
    continuation: str  # the verbatim-memorisation set (prompt -> ground-truth continuation)
    qa: dict[str, str]  # QA set -> the set its few-shot examples come from
    privleak_forget: str  # the MIA entry whose forget samples a retrain reference counts
    reference_keys: tuple[str, ...]  # the retrain model's AUCs a reference keeps
    summary: Callable[[dict, dict[str, float] | None], dict[str, float]]  # ps, reference values


def _muse_summary(ps: dict, values: dict[str, float] | None) -> dict[str, float]:
    return M.muse_summary(ps, None if values is None else values["mia_min_k"])


MUSE = Documents(
    schema="muse",
    sets={
        "forget_knowmem": (("knowmem", "forget_qa"),),
        "retain_knowmem": (("knowmem", "retain_qa"),),
        "forget_icl": (("knowmem", "forget_qa_icl"),),
        "retain_icl": (("knowmem", "retain_qa_icl"),),
        "forget_verbmem": (("verbmem", "forget"),),
        "privleak_forget": (("privleak", "forget"),),
        "privleak_holdout": (("privleak", "holdout"),),
    },
    mia={"privleak_forget": "privleak_forget", "privleak_holdout": "privleak_holdout"},
    mia_chunks=False,
    continuation="forget_verbmem",
    qa={"forget_knowmem": "forget_icl", "retain_knowmem": "retain_icl"},
    privleak_forget="privleak_forget",
    reference_keys=("mia_min_k",),
    summary=_muse_summary,
)
DUSK = Documents(
    schema="dusk",
    sets={
        "verbatim": (("eval_verbatim", "eval"),),
        "general_qa": (("eval_general_qa", "eval"),),
        "specific_forget_qa": (("eval_specific_forget_qa", "eval"),),
        "specific_retain_qa": (("eval_specific_retain_qa", "eval"),),
        "icl": (("eval_icl", "eval"),),
        "forget_doc": (("raw", "forget_chronological"),),
        "retain_docs": tuple(("raw", s) for s in D.DUSK_RETAIN),
        "holdout_doc": (("eval_holdout", "eval"),),
    },
    mia={
        "forget_chunks": "forget_doc",
        "retain_chunks": "retain_docs",
        "holdout_chunks": "holdout_doc",
    },
    mia_chunks=True,
    continuation="verbatim",
    qa={"general_qa": "icl", "specific_forget_qa": "icl", "specific_retain_qa": "icl"},
    privleak_forget="forget_chunks",
    reference_keys=("mia_min_k_plus_plus", "retain_mia_min_k_plus_plus"),
    summary=M.dusk_summary,
)


@dataclass(frozen=True)
class DocEvalData:
    docs: Documents
    rows: dict[str, list[dict]]  # evaluation set name -> rows
    params: DocParams


def load_eval(docs: Documents, source: str, params: DocParams) -> DocEvalData:
    """The evaluation sets of a MUSE or DUSK data set (hub id or local copy)."""
    rows = {
        name: [r for config, split in pairs for r in D.load(docs.schema, source, config, split)]
        for name, pairs in docs.sets.items()
    }
    return DocEvalData(docs, rows, params)


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
    docs, p, s, out = data.docs, data.params, data.rows, {}
    for name, doc in docs.mia.items():
        texts = [r["text"] for r in s[doc]]
        if docs.mia_chunks:
            enc = D.chunk(tok, texts, p.chunk_tokens)
        else:
            enc = [D.encode_text(tok, t, p.chunk_tokens) for t in texts]
        out[name] = _mia(model, tok, enc, cfg)
    if cfg.generate:
        out[docs.continuation] = _continuation(model, tok, s[docs.continuation], p, cfg)
        for qa, shots in docs.qa.items():
            out[qa] = _qa(model, tok, s[qa], s[shots], p, cfg)
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


def reference_from(docs: Documents, ps: dict, benchmark: str, split: str) -> DocReference:
    """The retrain model's reference from its own per-sample values."""
    m = aggregate(docs, ps, None)
    n = len(next(iter(ps[docs.privleak_forget].values())))
    return DocReference(benchmark, split, {k: m[k] for k in docs.reference_keys}, n)


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


def aggregate(docs: Documents, ps: dict, reference: DocReference | None) -> dict[str, float]:
    """The suite's numbers (generation-based ones only when ps holds generations)."""
    return docs.summary(ps, None if reference is None else reference.values)


def n_forget(data: DocEvalData) -> int:
    """How many forget samples the privleak AUC uses (to match a reference against)."""
    return len(data.rows[data.docs.mia[data.docs.privleak_forget]])


def to_jsonable(ps: dict) -> dict:
    return {
        k: {f: (v.tolist() if isinstance(v, np.ndarray) else v) for f, v in d.items()}
        for k, d in ps.items()
    }
