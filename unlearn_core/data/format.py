"""Prompt formatting and tokenisation of question/answer pairs, with the loss on answer tokens only.

Prompt and answer are tokenised separately and concatenated, so the boundary is exactly where
generation starts (no BPE merge across it) and labels are -100 on every prompt token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from unlearn_core.errors import UserError
from unlearn_core.logprobs import IGNORE

TEMPLATES = ("chat", "llama2", "base")
# The built-in tokenizer's chat template: "<s>Question: {q}\nAnswer: {a}</s>".
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}"
    "Question: {{ m['content'] }}\n{% elif m['role'] == 'assistant' %}"
    "Answer: {{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}Answer:{% endif %}"
)


@dataclass(frozen=True)
class PromptFormat:
    """How a question becomes a prompt: the tokenizer's chat template, Llama-2 [INST] or base QA."""

    template: str = "chat"  # chat: the tokenizer's template; llama2: [INST]; base: Question/Answer
    # the chat template's system message, e.g. "You are a helpful assistant." (open-unlearning's
    # Llama-3); "" on the command line: none
    system_prompt: str | None = None
    date_string: str | None = None  # Llama-3 templates insert today's date; pin it to reproduce
    max_length: int = 512

    def __post_init__(self) -> None:
        if self.template not in TEMPLATES:
            raise UserError(
                f"unknown prompt template {self.template!r}; accepted: {', '.join(TEMPLATES)}"
            )


def _chat_kwargs(fmt: PromptFormat) -> dict:
    return {"date_string": fmt.date_string} if fmt.date_string else {}


def prompt_text(tokenizer, question: str, fmt: PromptFormat) -> str:
    """The text the model sees before its answer."""
    if fmt.template == "llama2":
        return f"{tokenizer.bos_token or ''}[INST] {question} [/INST]"
    if fmt.template == "base":
        return f"{tokenizer.bos_token or ''}Question: {question}\nAnswer:"
    if not tokenizer.chat_template:
        raise UserError("the tokenizer has no chat template; use --template llama2 or base")
    messages = [{"role": "user", "content": question}]
    if fmt.system_prompt:
        messages.insert(0, {"role": "system", "content": fmt.system_prompt})
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, **_chat_kwargs(fmt)
    )


def answer_text(
    tokenizer, question: str, answer: str, fmt: PromptFormat, prompt: str | None = None
) -> str:
    """The answer as the template writes it after the prompt (end tags included, EOS excluded);
    `prompt` is prompt_text(tokenizer, question, fmt) when the caller has it already."""
    if fmt.template != "chat":
        return answer if fmt.template == "llama2" else f" {answer}"
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    if fmt.system_prompt:
        messages.insert(0, {"role": "system", "content": fmt.system_prompt})
    full = tokenizer.apply_chat_template(messages, tokenize=False, **_chat_kwargs(fmt))
    prompt = prompt_text(tokenizer, question, fmt) if prompt is None else prompt
    assert full.startswith(prompt), "chat template: the conversation does not extend the prompt"
    return full[len(prompt) :]


def encode_qa(tokenizer, question: str, answer: str, fmt: PromptFormat) -> dict[str, list[int]]:
    """input_ids and labels (-100 on the prompt) for one pair; EOS appended if the template lacks
    it."""
    return encode_pairs(tokenizer, [(question, answer)], fmt)[0]


def encode_pairs(
    tokenizer, pairs: Sequence[tuple[str, str]], fmt: PromptFormat
) -> list[dict[str, list[int]]]:
    """encode_qa of every (question, answer) pair, tokenized in two batched calls (each distinct
    prompt once: an evaluation set repeats each question with every perturbed answer)."""
    if not pairs:
        return []
    prompt_of = {q: prompt_text(tokenizer, q, fmt) for q in dict.fromkeys(q for q, _ in pairs)}
    prompts = list(prompt_of.values())
    ids_of = dict(
        zip(prompts, tokenizer(prompts, add_special_tokens=False)["input_ids"], strict=True)
    )
    answers = [answer_text(tokenizer, q, a, fmt, prompt_of[q]) for q, a in pairs]
    out = []
    for (q, _), a_ids in zip(
        pairs, tokenizer(answers, add_special_tokens=False)["input_ids"], strict=True
    ):
        p_ids = ids_of[prompt_of[q]]
        if not a_ids or a_ids[-1] != tokenizer.eos_token_id:
            a_ids = a_ids + [tokenizer.eos_token_id]
        ids = (p_ids + a_ids)[: fmt.max_length]
        labels = ([IGNORE] * len(p_ids) + a_ids)[: fmt.max_length]
        out.append({"input_ids": ids, "labels": labels})
    return out


def encode_prompt(tokenizer, question: str, fmt: PromptFormat) -> list[int]:
    """Prompt token ids for generation."""
    return tokenizer(prompt_text(tokenizer, question, fmt), add_special_tokens=False)["input_ids"]


def collate(
    examples: Sequence[dict[str, list[int]]], pad_id: int, left: bool = False, multiple: int = 1
) -> dict[str, torch.Tensor]:
    """Pad encoded examples into tensors: right padding for training, left for generation; the
    width rounded up to a multiple of `multiple` (few distinct shapes for the GPU's kernels)."""
    width = -(-max(len(e["input_ids"]) for e in examples) // multiple) * multiple
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for i, e in enumerate(examples):
        n = len(e["input_ids"])
        sl = slice(width - n, width) if left else slice(0, n)
        ids[i, sl] = torch.tensor(e["input_ids"])
        attn[i, sl] = 1
        if "labels" in e:
            labels[i, sl] = torch.tensor(e["labels"])
    return {"input_ids": ids, "attention_mask": attn, "labels": labels}


def encode_qa_spans(
    tokenizer, question: str, answer: str, spans: Sequence[Sequence[int]], fmt: PromptFormat
) -> dict[str, list[int]]:
    """encode_qa's input_ids with labels kept only on answer tokens that overlap a character span
    [start, end) of `answer` (-100 elsewhere, the appended EOS included). Needs a fast tokenizer
    (character offsets); a token overlapping a span by one character counts as inside it."""
    if not tokenizer.is_fast:
        raise UserError("sensitive-token views need a fast tokenizer (character offsets)")
    enc = encode_qa(tokenizer, question, answer, fmt)
    text = answer_text(tokenizer, question, answer, fmt)
    core = answer.strip()  # some chat templates trim the message content
    found = text.find(core)
    if found < 0:
        raise UserError(f"the {fmt.template} template rewrites the answer; cannot locate spans")
    base = found - (len(answer) - len(answer.lstrip()))  # where answer[0] would sit in `text`
    offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)[
        "offset_mapping"
    ]
    first = len(encode_prompt(tokenizer, question, fmt))
    labels = [IGNORE] * len(enc["labels"])
    for i, (s, e) in enumerate(offsets[: max(0, len(labels) - first)]):
        if any(s < base + b and e > base + a for a, b in spans):
            labels[first + i] = enc["labels"][first + i]
    return {"input_ids": enc["input_ids"], "labels": labels}
