"""The benchmark families (TOFU, MUSE, DUSK), one Suite record each: splits, the batch views a
method may read, evaluation, the retain reference, training examples; and the resolved Setup they
read. Callers look the record up (`setup.suite`, `SUITES[family]`), never test a family's name."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from unlearn_core import doc_eval, tofu_eval
from unlearn_core.data import documents
from unlearn_core.data.format import PromptFormat
from unlearn_core.data.tofu import FORGET_SPLITS, load_config, split_configs
from unlearn_core.data.views import FORGET_VIEWS, RETAIN_VIEWS, build_views
from unlearn_core.doc_eval import DocEvalData, DocParams, DocReference, Documents
from unlearn_core.evaluate import EvalConfig
from unlearn_core.methods import altpo
from unlearn_core.models import ModelConfig, load_model, load_tokenizer
from unlearn_core.tofu_eval import RetainReference, TofuEvalData

EvalData = TofuEvalData | DocEvalData
Reference = RetainReference | DocReference
Examples = tuple[list[dict], list[dict]]  # encoded forget and retain training examples


@dataclass(frozen=True)
class Suite:
    """What one benchmark family owns; a new family is one record here and its evaluation module."""

    label: str  # the family as messages name it
    default_split: str
    splits: tuple[str, ...]  # accepted forget splits
    views: tuple[str, ...]  # the batch views a method may read (data.views)
    builtin_retain: Callable[[str], str]  # forget split -> the built-in variant's retain model
    # (built-in benchmark, its params) -> the prompt format its results use
    default_format: Callable[[bool, DocParams | None], PromptFormat]
    load_eval: Callable[[Setup], EvalData]
    # (model, tok, setup, data, cfg, progress=False) -> per-sample values: one evaluation pass
    per_sample: Callable[..., dict]
    aggregate: Callable[[dict, Reference | None], dict[str, float]]
    reference_from: Callable[[dict, Setup], Reference]  # the retain model's per-sample values
    load_reference: Callable[[Path, Setup], Reference]  # a reference JSON, checked against setup
    reference_from_logs: Callable[[Setup, EvalData], Reference] | None  # None: no such logs
    check_reference: Callable[[Reference, EvalData], None]  # a reference fits the data
    # (setup, tok, views, seed, target model, device) -> forget and retain examples
    training: Callable[[Setup, Any, tuple[str, ...], int, ModelConfig, torch.device], Examples]


@dataclass(frozen=True)
class Setup:
    """Everything resolved for one (benchmark, split): paths, prompt format, reference source, and
    the family's Suite that evaluates it (benchmarks.resolve builds it)."""

    benchmark: str
    split: str
    data: str  # local folder or hub id
    target_model: str
    retain_model: str | None  # evaluated once to get the reference, unless retain_logs is given
    retain_logs: str | None  # an open-unlearning TOFU_EVAL.json of the retain model
    reference_cache: Path | None
    fmt: PromptFormat
    suite: Suite
    params: DocParams | None  # document benchmarks' evaluation lengths
    builtin: bool  # data and models generated locally (tiny models, not instruction-tuned)


# open-unlearning's TOFU chat format (Llama-3.x Instruct): this system prompt and the date pinned,
# so results do not change with the day they are computed on. Templates without a system role or
# date ignore what they do not use; --template llama2 / base and --system-prompt override it.
OPEN_UNLEARNING_CHAT = PromptFormat(
    template="chat", system_prompt="You are a helpful assistant.", date_string="10 Apr 2025"
)


def _tofu_format(builtin: bool, params: DocParams | None) -> PromptFormat:
    """Built-in: its tokenizer's chat template; from the hub: open-unlearning's chat format."""
    return PromptFormat() if builtin else OPEN_UNLEARNING_CHAT


def _tofu_per_sample(model, tok, setup: Setup, data, cfg: EvalConfig, progress=False) -> dict:
    return tofu_eval.per_sample(model, tok, setup.fmt, data, cfg, progress=progress)


def _tofu_reference(ps: dict, setup: Setup) -> RetainReference:
    return tofu_eval.reference_from(ps, setup.split)


def _tofu_load_reference(path: Path, setup: Setup) -> RetainReference:
    return RetainReference.load(path, setup.split)


def _tofu_logs(setup: Setup, data: TofuEvalData) -> RetainReference:
    return tofu_eval.reference_from_log(setup.retain_logs, setup.split)


def _tofu_data(setup: Setup) -> TofuEvalData:
    return tofu_eval.load_eval(setup.data, setup.split)


def _tofu_retain(split: str) -> str:
    return split_configs(split)["retain"]


def _tofu_training(setup: Setup, tok, views, seed: int, model: ModelConfig, device) -> Examples:
    """Encoded forget/retain views; forget rows carry AltPO alternates when a view needs them."""
    c = split_configs(setup.split)
    forget_rows = load_config(setup.data, c["forget"])
    retain_rows = load_config(setup.data, c["retain"])
    if "forget_alt" in views:
        plain = _plain_model(model)
        rows = alternates(
            setup.split, setup.data, setup.fmt, plain, seed, device, not setup.builtin
        )
        forget_rows = list(rows)
    return build_views(tok, setup.fmt, forget_rows, retain_rows, views, seed)


def _plain_model(cfg: ModelConfig) -> ModelConfig:
    """The model without LoRA (adapters start as the identity), so LoRA variants share a cache."""
    return ModelConfig(cfg.path, cfg.dtype, cfg.attn_implementation, cfg.trust_remote_code)


@functools.cache
def alternates(
    split: str,
    data: str,
    fmt: PromptFormat,
    model: ModelConfig,
    seed: int,
    device: torch.device,
    instruct: bool,
) -> tuple[dict, ...]:
    """AltPO's forget rows with an `alternate` answer sampled once from the target model, cached
    per process so sweep trials reuse them. Built-in tiny models answer the plain question; real
    (instruction-tuned, `instruct`) targets are asked to rewrite the answer."""
    rows = load_config(data, split_configs(split)["forget"])
    tok = load_tokenizer(model.path, model.trust_remote_code)
    target = load_model(model, device)
    out = altpo.make_alternates(target, tok, fmt, rows, seed=seed, instruct=instruct)
    del target
    return tuple(out)


# Document families: MUSE and DUSK share doc_eval; their doc_eval.Documents records differ.
DOC_SPLITS = ("forget",)  # MUSE and DUSK have one forget set; `--split forget` names it
DOC_VIEWS = ("forget", "retain")  # document benchmarks train on chunks: no QA-derived views


def _retrain(split: str) -> str:
    return "retrain"


def _doc_format(builtin: bool, params: DocParams) -> PromptFormat:
    """The base `Question: ...\\nAnswer:` format both evaluate with."""
    return PromptFormat(template="base", max_length=params.chunk_tokens)


def _doc_data(docs: Documents, setup: Setup) -> DocEvalData:
    return doc_eval.load_eval(docs, setup.data, setup.params)


def _doc_per_sample(model, tok, setup: Setup, data, cfg: EvalConfig, progress=False) -> dict:
    return doc_eval.per_sample(model, tok, data, cfg)


def _doc_reference(docs: Documents, ps: dict, setup: Setup) -> DocReference:
    return doc_eval.reference_from(docs, ps, setup.benchmark, setup.split)


def _doc_load_reference(path: Path, setup: Setup) -> DocReference:
    return DocReference.load(path, setup.benchmark, setup.split)


def _muse_logs(setup: Setup, data: DocEvalData) -> DocReference:
    n = doc_eval.n_forget(data)
    return doc_eval.reference_from_muse_log(setup.retain_logs, setup.benchmark, setup.split, n)


def _any_count(reference: DocReference, data: DocEvalData) -> None:
    """Document references hold AUCs, compared as numbers: any sample count fits."""


def _doc_training(docs: Documents, setup: Setup, tok, views, seed, model, device) -> Examples:
    """Chunks of the forget and retain documents (`documents.chunk`)."""
    forget_pair, retain_pairs = documents.TRAINING[docs.schema]
    size = setup.params.chunk_tokens

    def chunks(pairs: list) -> list[dict]:
        return documents.chunk(tok, documents.texts(docs.schema, setup.data, pairs), size)

    forget, retain = chunks([forget_pair]), chunks(list(retain_pairs))
    return [{"forget": e} for e in forget], [{"retain": e} for e in retain]


def _documents(label: str, docs: Documents, logs) -> Suite:
    """A document benchmark's record: MUSE and DUSK differ only in their Documents and logs."""
    return Suite(
        label=label,
        default_split="forget",
        splits=DOC_SPLITS,
        views=DOC_VIEWS,
        builtin_retain=_retrain,
        default_format=_doc_format,
        load_eval=functools.partial(_doc_data, docs),
        per_sample=_doc_per_sample,
        aggregate=functools.partial(doc_eval.aggregate, docs),
        reference_from=functools.partial(_doc_reference, docs),
        load_reference=_doc_load_reference,
        reference_from_logs=logs,
        check_reference=_any_count,
        training=functools.partial(_doc_training, docs),
    )


SUITES = {
    "tofu": Suite(
        label="TOFU",
        default_split="forget10",
        splits=FORGET_SPLITS,
        views=FORGET_VIEWS + RETAIN_VIEWS,
        builtin_retain=_tofu_retain,
        default_format=_tofu_format,
        load_eval=_tofu_data,
        per_sample=_tofu_per_sample,
        aggregate=tofu_eval.aggregate,
        reference_from=_tofu_reference,
        load_reference=_tofu_load_reference,
        reference_from_logs=_tofu_logs,
        check_reference=tofu_eval.check_reference,
        training=_tofu_training,
    ),
    "muse": _documents("MUSE", doc_eval.MUSE, _muse_logs),
    "dusk": _documents("DUSK", doc_eval.DUSK, None),  # DUSK publishes no open-unlearning logs
}
