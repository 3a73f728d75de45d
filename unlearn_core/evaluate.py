"""Run a model over evaluation sets once, keeping per-sample values (losses, token
log-probs, generations); `unlearn_core.metrics` turns them into the benchmark's numbers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from unlearn_core.data.format import PromptFormat, collate, encode_pairs, encode_prompt
from unlearn_core.logprobs import position_chunks, shift


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int = 64  # sequences per forward pass
    gen_batch_size: int = 64  # prompts per generate call
    max_new_tokens: int = 200
    generate: bool = True  # ROUGE needs generations; sweeps may turn it off mid-training
    token_stats: bool = True  # per-token log-probs for MIA, ES and EM


@dataclass
class SeqStats:
    """Per-sequence teacher-forced statistics of the answer tokens."""

    avg_loss: np.ndarray  # (N,) mean answer-token NLL
    token_logprobs: list[np.ndarray]  # log p(y_t), per answer token
    token_mu: list[np.ndarray]  # E_{v~p} log p(v), per answer token (Min-K%++)
    token_sigma: list[np.ndarray]  # std_{v~p} log p(v), per answer token
    pred_ids: list[np.ndarray]  # teacher-forced argmax, per answer token
    label_ids: list[np.ndarray]


def score_sequences(
    model: torch.nn.Module,
    tokenizer,
    fmt: PromptFormat,
    pairs: Sequence[tuple[str, str]],
    cfg: EvalConfig,
) -> SeqStats:
    """Teacher-forced pass over (question, answer) pairs, batched by length to limit padding."""
    enc = encode_pairs(tokenizer, pairs, fmt)
    return score_encoded(model, enc, tokenizer.pad_token_id, cfg)


@torch.no_grad()
def score_encoded(
    model: torch.nn.Module, enc: Sequence[dict[str, list[int]]], pad_id: int, cfg: EvalConfig
) -> SeqStats:
    """Teacher-forced statistics of the labelled tokens (labels != -100) of encoded sequences."""
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]["input_ids"]))
    n = len(enc)
    avg = np.zeros(n)
    lp: list = [None] * n
    mu: list = [None] * n
    sd: list = [None] * n
    pred: list = [None] * n
    lab: list = [None] * n
    device = next(model.parameters()).device
    for start in range(0, n, cfg.batch_size):
        idx = order[start : start + cfg.batch_size]
        batch = collate([enc[i] for i in idx], pad_id)
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits, targets, mask = shift(logits, batch["labels"])
        tok_lp, m, s = _token_stats(logits, targets, cfg.token_stats)  # (B, T-1) each
        nll = -(tok_lp * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        if cfg.token_stats:
            am = logits.argmax(-1)
        # one copy to the host per batch, then numpy slices per row (per-row tensor indexing cost
        # as much as the forward passes on small models)
        keep, nll_np = mask.cpu().numpy(), nll.cpu().numpy()
        tok_lp_np, targets_np = tok_lp.cpu().numpy(), targets.cpu().numpy()
        if cfg.token_stats:
            m_np, s_np, am_np = m.cpu().numpy(), s.cpu().numpy(), am.cpu().numpy()
        for j, i in enumerate(idx):
            avg[i] = float(nll_np[j])
            lp[i], lab[i] = tok_lp_np[j][keep[j]], targets_np[j][keep[j]]
            if cfg.token_stats:
                mu[i], sd[i], pred[i] = m_np[j][keep[j]], s_np[j][keep[j]], am_np[j][keep[j]]
    return SeqStats(avg, lp, mu, sd, pred, lab)


def _token_stats(
    logits: torch.Tensor, targets: torch.Tensor, moments: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """log p(y_t), and with `moments` E_p log p and std_p log p, per position (B, T-1) in fp32,
    in chunks of positions (logprobs.position_chunks): at batch 64 and a 128k vocabulary one fp32
    (B, T, V) tensor alone is 32 MiB per position."""
    tok_lp = torch.empty(targets.shape, dtype=torch.float32, device=logits.device)
    m, s = (torch.empty_like(tok_lp), torch.empty_like(tok_lp)) if moments else (None, None)
    for sl in position_chunks(logits):
        logp = torch.log_softmax(logits[:, sl].float(), dim=-1)  # (B, chunk, V)
        tok_lp[:, sl] = logp.gather(-1, targets[:, sl, None]).squeeze(-1)
        if moments:
            p = logp.exp()
            m[:, sl] = (p * logp).sum(-1)
            s[:, sl] = ((p * logp.square()).sum(-1) - m[:, sl].square()).clamp(min=0).sqrt()
    return tok_lp, m, s


def generate_answers(
    model: torch.nn.Module, tokenizer, fmt: PromptFormat, questions: Sequence[str], cfg: EvalConfig
) -> list[str]:
    """Greedy answers (left padding, KV cache, stop at EOS), decoded without special tokens."""
    prompts = [encode_prompt(tokenizer, q, fmt) for q in questions]
    return generate_from(model, tokenizer, prompts, cfg.max_new_tokens, cfg.gen_batch_size)


def end_tokens(model: torch.nn.Module, tokenizer) -> int | list[int]:
    """The tokens that end a generation: the model's generation_config's (all of them: Llama-3.1
    Instruct lists three), as open-unlearning's generate uses; else the tokenizer's EOS."""
    config = getattr(model, "generation_config", None)
    eos = None if config is None else config.eos_token_id
    return tokenizer.eos_token_id if eos is None else eos


@torch.no_grad()
def generate_from(
    model: torch.nn.Module,
    tokenizer,
    prompts: Sequence[list[int]],
    max_new_tokens: int,
    batch_size: int,
) -> list[str]:
    """Greedy continuations of token-id prompts (left padding, KV cache, stop at EOS), decoded
    without special tokens and stripped; batched by prompt length."""
    prompts = [{"input_ids": p} for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]["input_ids"]))
    out = [""] * len(prompts)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        batch = collate([prompts[i] for i in idx], tokenizer.pad_token_id, left=True)
        gen = model.generate(
            input_ids=batch["input_ids"].to(device),
            attention_mask=batch["attention_mask"].to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            use_cache=True,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=end_tokens(model, tokenizer),
        )
        new = gen[:, batch["input_ids"].shape[1] :]
        for j, i in enumerate(idx):
            out[i] = tokenizer.decode(new[j], skip_special_tokens=True).strip()
    return out
