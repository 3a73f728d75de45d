"""The built-in benchmark's artefacts: the generated data, a locally trained BPE tokenizer with a
chat template, and tiny Llama target/retain models trained from scratch on CPU, cached by content
hash."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import math
import multiprocessing
import os
import random
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from unlearn_core.data import tiny_tofu
from unlearn_core.data.format import CHAT_TEMPLATE, PromptFormat, collate, encode_qa
from unlearn_core.errors import UserError
from unlearn_core.logprobs import IGNORE

log = logging.getLogger(__name__)
BUILD_VERSION = "2"  # bump when the tokenizer or model training changes


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
    data: tiny_tofu.TinyTofuSpec
    model: TinyModelConfig


VARIANTS = {
    "tiny-tofu": Variant(tiny_tofu.TinyTofuSpec(), TinyModelConfig()),
    "tiny-tofu-small": Variant(tiny_tofu.SMALL, TinyModelConfig(batch_size=16)),
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
    return json.dumps(tiny_tofu.generate(VARIANTS[name].data), sort_keys=True)


def variant_dir(name: str) -> Path:
    """Cache folder keyed by the generated content and the model settings, so any change to the
    generator or the training recipe builds anew instead of reusing stale artefacts."""
    v = VARIANTS[name]
    key = json.dumps([BUILD_VERSION, hashlib.sha256(_generated(name).encode()).hexdigest(),
                      dataclasses.asdict(v.model)], sort_keys=True)
    return cache_root() / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


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
    """Every config as `<config>.json`, readable by `unlearn_core.data.tofu.load_config`."""

    def build(tmp: Path) -> None:
        for config, rows in json.loads(_generated(name)).items():
            (tmp / f"{config}.json").write_text(json.dumps(rows))

    return _atomic_build(variant_dir(name) / "data", build)


def _load_all(folder: Path) -> dict[str, list[dict]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def tokenizer_dir(name: str) -> Path:
    def build(tmp: Path) -> None:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        from transformers import PreTrainedTokenizerFast

        texts = tiny_tofu.corpus_texts(_load_all(data_dir(name)))
        texts += ["Question: ", "Answer: "]
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
            tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
            unk_token="<unk>",
        )
        fast.chat_template = CHAT_TEMPLATE
        fast.save_pretrained(tmp)

    return _atomic_build(variant_dir(name) / "tokenizer", build)


def _model_folder(name: str, train_split: str) -> Path:
    if train_split not in tiny_tofu.TRAIN_SPLITS:
        accepted = ", ".join(tiny_tofu.TRAIN_SPLITS)
        raise UserError(f"unknown training split {train_split!r}; accepted: {accepted}")
    return variant_dir(name) / ("target" if train_split == "full" else train_split)


def model_dir(name: str, train_split: str) -> Path:
    """The target model (train_split 'full') or a retain model ('retain90', ...), trained once."""

    def build(tmp: Path) -> None:
        rows = tiny_tofu.training_rows(_load_all(data_dir(name)), train_split)
        train_tiny_model(tokenizer_dir(name), rows, VARIANTS[name].model, tmp)

    return _atomic_build(_model_folder(name, train_split), build)


def build_models(name: str, train_splits: Sequence[str]) -> dict[str, Path]:
    """The models of `train_splits`, training the missing ones concurrently: one single-threaded
    process each, as two threads on one tiny model barely beat one (and stall on a busy host)."""
    data_dir(name)
    tokenizer_dir(name)  # both built here once, not raced for by the workers
    missing = [s for s in dict.fromkeys(train_splits) if not _model_folder(name, s).exists()]
    workers = min(len(missing), os.cpu_count() or 1)
    if workers > 1 and not multiprocessing.current_process().daemon:
        log.info("training %s of %s concurrently", ", ".join(missing), name)
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            pool.starmap(model_dir, [(name, s) for s in missing])
    return {s: model_dir(name, s) for s in train_splits}


def train_tiny_model(tok_dir: Path, rows: list[dict], cfg: TinyModelConfig, out: Path) -> None:
    """Train a Llama from scratch on question/answer rows (loss on answers), save it with its
    tokenizer. Single-threaded, so the weights are the same bits in a worker or in process."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _train(tok_dir, rows, cfg, out)
    finally:
        torch.set_num_threads(threads)


def _train(tok_dir: Path, rows: list[dict], cfg: TinyModelConfig, out: Path) -> None:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(LlamaConfig(
        vocab_size=len(tok), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_attention_heads, max_position_embeddings=256,
        tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    ))
    fmt = PromptFormat()
    enc = [encode_qa(tok, r["question"], r["answer"], fmt) for r in rows]
    rng = random.Random(cfg.seed)
    steps = cfg.epochs * math.ceil(len(enc) / cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(
        (s + 1) / cfg.warmup_steps, max(0.0, (steps - s) / max(1, steps - cfg.warmup_steps))))
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


def reference_path(name: str, split: str) -> Path:
    """Where the retain model's per-sample reference for `split` is cached."""
    return variant_dir(name) / "reference" / f"{split}.json"
