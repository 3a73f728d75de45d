"""Prompt formats on a locally built tokenizer: a Llama-3-style chat template with the date pinned
(open-unlearning's TOFU format), Llama-2 [INST] and the base Question/Answer format; the loss only
on answer tokens; a tokenizer without a chat template refused in one line."""

from __future__ import annotations

import copy

import pytest

from unlearn_core.benchmarks import default_format, prompt_format
from unlearn_core.data.format import PromptFormat, answer_text, encode_qa, prompt_text
from unlearn_core.errors import UserError
from unlearn_core.logprobs import IGNORE
from unlearn_core.suites import OPEN_UNLEARNING_CHAT

# The shape of Llama-3.x Instruct's template: a system header carrying the knowledge cutoff and
# today's date (which falls back to the current day unless date_string is passed), header tags
# and <|eot_id|> after each turn.
LLAMA3_LIKE = (
    "{{ bos_token }}{% if date_string is not defined %}{% set date_string = strftime_now('%d %b "
    "%Y') %}{% endif %}<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
    "December 2023\nToday Date: {{ date_string }}\n\n{% if messages[0]['role'] == 'system' %}"
    "{{ messages[0]['content'] }}{% endif %}<|eot_id|>{% for m in messages %}"
    "{% if m['role'] != 'system' %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
Q, A = "Where was Ana Lor born?", "Ana Lor was born in Lima, Peru."


@pytest.fixture(scope="module")
def llama3_tok(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.add_special_tokens(
        {"additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]}
    )
    tok.chat_template = LLAMA3_LIKE
    return tok


def _answer_labels(enc: dict) -> list[int]:
    return [y for y in enc["labels"] if y != IGNORE]


def test_chat_format_pins_the_date_and_system_prompt(llama3_tok):
    text = prompt_text(llama3_tok, Q, OPEN_UNLEARNING_CHAT)
    assert text == (
        "<s><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
        "Today Date: 10 Apr 2025\n\nYou are a helpful assistant.<|eot_id|>"
        f"<|start_header_id|>user<|end_header_id|>\n\n{Q}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert answer_text(llama3_tok, Q, A, OPEN_UNLEARNING_CHAT) == A + "<|eot_id|>"
    # without a pinned date the template prints today's: the prompt depends on the day
    unpinned = prompt_text(llama3_tok, Q, PromptFormat(system_prompt="x"))
    assert "Today Date: 10 Apr 2025" not in unpinned and "Today Date: " in unpinned


def test_chat_loss_covers_only_the_answer_and_end_tag(llama3_tok):
    enc = encode_qa(llama3_tok, Q, A, OPEN_UNLEARNING_CHAT)
    n_prompt = len(
        llama3_tok(prompt_text(llama3_tok, Q, OPEN_UNLEARNING_CHAT), add_special_tokens=False)[
            "input_ids"
        ]
    )
    assert enc["labels"][:n_prompt] == [IGNORE] * n_prompt
    assert all(y != IGNORE for y in enc["labels"][n_prompt:])
    decoded = llama3_tok.decode(_answer_labels(enc))
    assert decoded == A + "<|eot_id|></s>"  # the EOS is appended after the template's end tag


@pytest.mark.parametrize(
    "template, prompt, answer",
    [
        ("llama2", f"<s>[INST] {Q} [/INST]", A),
        ("base", f"<s>Question: {Q}\nAnswer:", f" {A}"),
    ],
)
def test_llama2_and_base_formats(tiny_tokenizer, template, prompt, answer):
    fmt = PromptFormat(template=template)
    assert prompt_text(tiny_tokenizer, Q, fmt) == prompt
    assert answer_text(tiny_tokenizer, Q, A, fmt) == answer
    enc = encode_qa(tiny_tokenizer, Q, A, fmt)
    assert tiny_tokenizer.decode(_answer_labels(enc)).strip() == A + "</s>"
    n_prompt = len(tiny_tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert (
        enc["input_ids"][:n_prompt] == tiny_tokenizer(prompt, add_special_tokens=False)["input_ids"]
    )
    assert set(enc["labels"][:n_prompt]) == {IGNORE}


def test_a_tokenizer_without_chat_template_is_refused(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = None
    with pytest.raises(UserError, match="no chat template; use --template llama2 or base"):
        encode_qa(tok, Q, A, PromptFormat(template="chat"))
    assert prompt_text(tok, Q, PromptFormat(template="base")).endswith("Answer:")


def test_benchmark_defaults_and_user_overrides():
    assert default_format("tofu") == OPEN_UNLEARNING_CHAT
    assert default_format("tiny-tofu") == PromptFormat()
    assert default_format("tiny-muse").template == "base"
    assert prompt_format("tofu", None, None, None) is None
    llama2 = prompt_format("tofu", "llama2", None, None)
    assert llama2.template == "llama2"
    no_system = prompt_format("tofu", None, "", "1 Jan 2026")
    assert no_system.system_prompt is None and no_system.date_string == "1 Jan 2026"
    with pytest.raises(UserError, match="unknown prompt template 'alpaca'"):
        prompt_format("tofu", "alpaca", None, None)


def test_generation_ends_at_every_end_token_of_the_generation_config(tiny_tokenizer):
    """Llama-3.1 Instruct's generation_config lists three end tokens (<|end_of_text|>,
    <|eom_id|>, <|eot_id|>) where its tokenizer has one EOS: generation must stop at any of them
    (open-unlearning passes none, so generate reads the config); the tokenizer's EOS serves only
    a model whose config names none."""
    from transformers import GenerationConfig

    from unlearn_core.evaluate import end_tokens

    class Model:
        generation_config = GenerationConfig(eos_token_id=[128001, 128008, 128009])

    assert end_tokens(Model(), tiny_tokenizer) == [128001, 128008, 128009]
    Model.generation_config = GenerationConfig()
    assert end_tokens(Model(), tiny_tokenizer) == tiny_tokenizer.eos_token_id
