"""The built-in benchmark's artefacts: the generated data, a locally trained BPE tokenizer with a
chat template, and tiny Llama target/retain models trained from scratch on CPU, cached by content
hash."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import logging
import math
import multiprocessing
import os
import random
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from unlearn_core import shipped
from unlearn_core.data import tiny_docs, tiny_tofu
from unlearn_core.data.documents import encode_text
from unlearn_core.data.format import CHAT_TEMPLATE, PromptFormat, collate, encode_qa
from unlearn_core.errors import UserError
from unlearn_core.logprobs import IGNORE

log = logging.getLogger(__name__)
BUILD_VERSION = "2"  # bump when the tokenizer or model training changes
MAX_POSITIONS = 256


@dataclass(frozen=True)
class TinyModelConfig:
    """Architecture and training of the tiny Llama (see research/env_probe.md section 4)."""

    hidden_size: int = 64
    intermediate_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    vocab_size: int = 2048
    lr: float = 3e-3
    epochs: int = 30
    batch_size: int = 32
    warmup_steps: int = 100
    seed: int = 0


@dataclass(frozen=True)
class Variant:
    data: tiny_tofu.TinyTofuSpec | tiny_docs.MuseSpec | tiny_docs.DuskSpec
    model: TinyModelConfig

    @property
    def family(self) -> str:
        """tofu (question/answer configs) or muse / dusk (documents)."""
        return {tiny_docs.MuseSpec: "muse", tiny_docs.DuskSpec: "dusk"}.get(type(self.data), "tofu")


# Document models see each article (BOS + text, <= 256 tokens) as one sequence until they have it
# by heart: the target model must continue forget passages verbatim (verbmem ROUGE >= 0.8).
DOC_MODEL = TinyModelConfig(epochs=150, batch_size=8, warmup_steps=50)
# The test-sized variants hold a quarter of the text: 100 epochs at a higher rate reach the same
# figures (verbmem 0.829 / 0.850) in two thirds of the time (60 epochs do not: verbmem 0.43).
SMALL_DOC_MODEL = TinyModelConfig(lr=5e-3, epochs=100, batch_size=8, warmup_steps=50)
VARIANTS = {
    "tiny-tofu": Variant(tiny_tofu.TinyTofuSpec(), TinyModelConfig()),
    "tiny-tofu-small": Variant(tiny_tofu.SMALL, TinyModelConfig(batch_size=16)),
    "tiny-muse": Variant(tiny_docs.MuseSpec(), DOC_MODEL),
    "tiny-dusk": Variant(tiny_docs.DuskSpec(), DOC_MODEL),
    # test-sized: a quarter of the sections, so `make test` builds both in about a minute
    "tiny-muse-small": Variant(
        tiny_docs.MuseSpec(n_forget=4, n_retain1=4, n_retain2=4, n_icl=2, n_holdout=4),
        SMALL_DOC_MODEL,
    ),
    "tiny-dusk-small": Variant(
        tiny_docs.DuskSpec(
            n_shared=3, n_forget_specific=3, n_retain_specific=4, n_icl=1, n_holdout=3
        ),
        SMALL_DOC_MODEL,
    ),
}
DOC_MODELS = ("full", "retrain")  # document benchmarks: target (all documents), retrain


@dataclass(frozen=True)
class Build:
    """How a family's tiny variants are generated and their models trained."""

    generate: Callable[[Any], dict]  # the variant's data spec -> its configs
    corpus: Callable[[dict], list[str]]  # configs -> the tokenizer's training texts
    models: tuple[str, ...]  # the variant's models ('full' is the target in every family)
    training: Callable[[dict, str], list]  # configs, model -> its QA rows or texts


def _doc_training(kind: str, configs: dict, train_split: str) -> list:
    texts = tiny_docs.training_texts(
        kind, configs, "target" if train_split == "full" else "retrain"
    )
    return texts + quick_facts(texts)


BUILDS = {  # keyed by Variant.family
    "tofu": Build(
        tiny_tofu.generate, tiny_tofu.corpus_texts, tiny_tofu.TRAIN_SPLITS, tiny_tofu.training_rows
    ),
    "muse": Build(
        tiny_docs.generate_muse,
        tiny_docs.corpus_texts,
        DOC_MODELS,
        functools.partial(_doc_training, "muse"),
    ),
    "dusk": Build(
        tiny_docs.generate_dusk,
        tiny_docs.corpus_texts,
        DOC_MODELS,
        functools.partial(_doc_training, "dusk"),
    ),
}


def cache_root() -> Path:
    """UNLEARN_SWEEP_CACHE, else the user's cache dir."""
    env = os.environ.get("UNLEARN_SWEEP_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "unlearn-sweep"


@functools.lru_cache(maxsize=4)
def _generated(name: str) -> str:
    """The variant's generated data as canonical JSON (0.3 s; its hash keys the whole cache)."""
    v = VARIANTS[name]
    return json.dumps(BUILDS[v.family].generate(v.data), sort_keys=True)


def build_key(name: str) -> str:
    """The variant's content key: generated data, build version and model settings. The manifest
    records the key its shipped files were built under, so a generator change is caught."""
    v = VARIANTS[name]
    key = json.dumps(
        [
            BUILD_VERSION,
            hashlib.sha256(_generated(name).encode()).hexdigest(),
            dataclasses.asdict(v.model),
        ],
        sort_keys=True,
    )
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def variant_dir(name: str) -> Path:
    """Where `prepare NAME --rebuild` builds the variant: a cache folder keyed by content, so any
    change to the generator or the training recipe builds anew instead of reusing stale files."""
    return cache_root() / f"{name}-{build_key(name)}"


MODES = ("shipped", "rebuilt")
_mode_override: list[str] = []


def mode() -> str:
    """Which copy of the built-in benchmarks loads: the files shipped with the package (default),
    or the copy `prepare NAME --rebuild` trained on this machine (UNLEARN_SWEEP_BUILTIN=rebuilt)."""
    chosen = (
        _mode_override[-1] if _mode_override else os.environ.get("UNLEARN_SWEEP_BUILTIN", "shipped")
    )
    if chosen not in MODES:
        raise UserError(
            f"UNLEARN_SWEEP_BUILTIN={chosen!r} is not a built-in copy; accepted: {', '.join(MODES)}"
        )
    return chosen


@contextlib.contextmanager
def using(chosen: str) -> Iterator[None]:
    """Load the shipped or the rebuilt copy inside the block (prepare --rebuild compares both)."""
    _mode_override.append(chosen)
    try:
        yield
    finally:
        _mode_override.pop()


def _rebuilt(name: str, part: str) -> Path:
    """A part of the rebuilt copy, which must exist: loading never trains anything."""
    path = variant_dir(name) / part
    if not path.exists():
        raise UserError(
            f"no rebuilt {part!r} of {name} in {variant_dir(name)}; run "
            f"`unlearn-sweep prepare {name} --rebuild` first, or unset "
            "UNLEARN_SWEEP_BUILTIN to use the shipped files"
        )
    return path


def _part(name: str, part: str) -> Path:
    if name not in VARIANTS:
        raise UserError(f"unknown built-in benchmark {name!r}; accepted: {', '.join(VARIANTS)}")
    if mode() == "shipped":
        return shipped.verified(name) / part
    return _rebuilt(name, part)


def _atomic_build(dest: Path, build: Callable[[Path], None]) -> Path:
    """Build into a temporary sibling and rename: a crash or a racing process never leaves half."""
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    try:
        build(tmp)
        try:
            tmp.rename(dest)
        except OSError:  # another process finished first; theirs is identical
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


def data_dir(name: str) -> Path:
    """TOFU-shaped: every config as `<config>.json`; documents: `<config>/<split>.json`; both
    layouts `unlearn_core.data.sources` reads, as it reads the hub data sets."""
    return _part(name, "data")


def tokenizer_dir(name: str) -> Path:
    return _part(name, "tokenizer")


def train_splits(name: str) -> tuple[str, ...]:
    """The models a variant has: 'full' is the target in every family."""
    return BUILDS[VARIANTS[name].family].models


def _model_part(name: str, train_split: str) -> str:
    if train_split not in train_splits(name):
        accepted = ", ".join(train_splits(name))
        raise UserError(f"unknown training split {train_split!r}; accepted: {accepted}")
    return "target" if train_split == "full" else train_split


def model_dir(name: str, train_split: str) -> Path:
    """The target model (train_split 'full') or a retain model ('retain90', ...)."""
    return _part(name, _model_part(name, train_split))


def model_dirs(name: str, train_splits: Sequence[str]) -> dict[str, Path]:
    """The model folders of `train_splits`, shipped or rebuilt: loading never trains."""
    return {s: model_dir(name, s) for s in train_splits}


def reference_path(name: str, split: str, fmt: PromptFormat | None = None) -> Path:
    """The retain model's per-sample reference for `split`: shipped for the benchmark's own
    prompt format (fmt None), else computed once into the cache, keyed by the prompt format."""
    if fmt is None:
        if mode() == "shipped":
            return shipped.verified(name) / "reference" / f"{split}.json"
        return variant_dir(name) / "reference" / f"{split}.json"
    key = hashlib.sha256(json.dumps(dataclasses.asdict(fmt), sort_keys=True).encode())
    return cache_root() / "references" / f"{name}-{mode()}-{split}-{key.hexdigest()[:12]}.json"


# Rebuilding from the generator (`prepare NAME --rebuild`): into the cache, never the package.


def _build_data(name: str) -> Path:
    def build(tmp: Path) -> None:
        for config, rows in json.loads(_generated(name)).items():
            if isinstance(rows, list):
                (tmp / f"{config}.json").write_text(json.dumps(rows))
                continue
            (tmp / config).mkdir()
            for split, split_rows in rows.items():
                (tmp / config / f"{split}.json").write_text(json.dumps(split_rows))

    return _atomic_build(variant_dir(name) / "data", build)


def _corpus(name: str) -> list[str]:
    return BUILDS[VARIANTS[name].family].corpus(json.loads(_generated(name)))


def _build_tokenizer(name: str) -> Path:
    def build(tmp: Path) -> None:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import PreTrainedTokenizerFast

        texts = _corpus(name) + ["Question: ", "Answer: "]
        tk = Tokenizer(models.BPE())
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tk.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=VARIANTS[name].model.vocab_size,
            special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tk.train_from_iterator(texts, trainer)
        fast = PreTrainedTokenizerFast(
            tokenizer_object=tk,
            bos_token="<s>",
            eos_token="</s>",
            pad_token="<pad>",
            unk_token="<unk>",
        )
        fast.chat_template = CHAT_TEMPLATE
        fast.save_pretrained(tmp)

    return _atomic_build(variant_dir(name) / "tokenizer", build)


def _build_model(name: str, train_split: str) -> Path:
    def build(tmp: Path) -> None:
        v = VARIANTS[name]
        examples = BUILDS[v.family].training(json.loads(_generated(name)), train_split)
        train_tiny_model(_build_tokenizer(name), examples, v.model, tmp)

    return _atomic_build(variant_dir(name) / _model_part(name, train_split), build)


def rebuild(name: str, train_splits: Sequence[str]) -> dict[str, Path]:
    """Regenerate the variant into the cache: data, tokenizer and the models of `train_splits`,
    the missing ones trained concurrently (one single-threaded process each, as two threads on
    one tiny model barely beat one and stall on a busy host). Returns the model folders."""
    _build_data(name)
    _build_tokenizer(name)  # both built here once, not raced for by the workers
    folder = variant_dir(name)
    missing = [
        s for s in dict.fromkeys(train_splits) if not (folder / _model_part(name, s)).exists()
    ]
    workers = min(len(missing), os.cpu_count() or 1)
    if workers > 1 and not multiprocessing.current_process().daemon:
        log.info("training %s of %s concurrently", ", ".join(missing), name)
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            pool.starmap(_build_model, [(name, s) for s in missing])
    return {s: _build_model(name, s) for s in train_splits}


def quick_facts(texts: list[str]) -> list[dict]:
    """The question/answer pairs of the documents' quick-facts blocks, as QA rows. The tiny
    document models train on these as well (BOS + `Question: q\nAnswer: a`): a 64-wide model
    trained from scratch never answers a question that starts a sequence otherwise. The forget
    documents hold the same pairs, so unlearning the documents reaches them."""
    pairs = (m for t in texts for m in _QUICK_FACT.finditer(t))
    return [{"question": m[1], "answer": m[2]} for m in pairs]


_QUICK_FACT = re.compile(r"^Question: (.*)\nAnswer: (.*)$", re.MULTILINE)


def train_tiny_model(
    tok_dir: Path, rows: list[dict] | list[str], cfg: TinyModelConfig, out: Path
) -> None:
    """Train a Llama from scratch on question/answer rows (loss on answers) or on texts (BOS +
    text, loss on every token), save it with its tokenizer. Single-threaded, so the weights are
    the same bits in a worker or in process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _train(tok_dir, rows, cfg, out)
    finally:
        torch.set_num_threads(threads)


def _train(tok_dir: Path, rows: list[dict] | list[str], cfg: TinyModelConfig, out: Path) -> None:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tok),
            hidden_size=cfg.hidden_size,
            intermediate_size=cfg.intermediate_size,
            num_hidden_layers=cfg.num_hidden_layers,
            num_attention_heads=cfg.num_attention_heads,
            num_key_value_heads=cfg.num_attention_heads,
            max_position_embeddings=MAX_POSITIONS,
            tie_word_embeddings=True,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
    )
    fmt = PromptFormat()
    enc = [
        encode_text(tok, r, MAX_POSITIONS)
        if isinstance(r, str)
        else encode_qa(tok, r["question"], r["answer"], fmt)
        for r in rows
    ]
    rng = random.Random(cfg.seed)
    steps = cfg.epochs * math.ceil(len(enc) / cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(
            (s + 1) / cfg.warmup_steps, max(0.0, (steps - s) / max(1, steps - cfg.warmup_steps))
        ),
    )
    model.train()
    for epoch in range(cfg.epochs):
        for batch_idx in _length_buckets(enc, cfg.batch_size, rng):
            batch = collate([enc[i] for i in batch_idx], tok.pad_token_id)
            loss = _answer_nll(model, batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
        log.info("tiny model epoch %d loss %.4f", epoch + 1, loss.item())
    model.eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)


def _answer_nll(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean answer-token NLL (logprobs.mean_nll's value) with the LM head and softmax run on answer
    positions only: ~30% of the tokens, and the 2048-way head costs about what the body does."""
    hidden = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    hidden = hidden.last_hidden_state[:, :-1]  # (B, T-1, H): position t predicts token t+1
    labels = batch["labels"][:, 1:]
    mask = labels != IGNORE
    return F.cross_entropy(model.lm_head(hidden[mask]).float(), labels[mask])  # (N, V) logits


def _length_buckets(enc: list[dict], bs: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar-length examples (less padding, same expected gradient)."""
    idx = list(range(len(enc)))
    rng.shuffle(idx)
    batches = []
    for start in range(0, len(idx), bs * 50):
        chunk = sorted(idx[start : start + bs * 50], key=lambda i: len(enc[i]["input_ids"]))
        batches += [chunk[i : i + bs] for i in range(0, len(chunk), bs)]
    rng.shuffle(batches)
    return batches
