"""AltPO's alternates (issue 14 item 9): near-copies of the true answer are rejected, each question
gets N_ALTERNATES of them, deterministically, and the forget_alt view the job trains on holds them.
GRUN's edit survives saving: the reloaded model computes the in-memory edited model's logits."""

from __future__ import annotations

import json
import types

import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM

from unlearn_core import suites
from unlearn_core.data.format import PromptFormat, encode_qa
from unlearn_core.data.views import refusals
from unlearn_core.errors import UserError
from unlearn_core.logprobs import forward
from unlearn_core.methods import altpo, grun
from unlearn_core.methods._grun_edit import EDIT_CONFIG, EDIT_WEIGHTS
from unlearn_core.models import ModelConfig, load_model, save_model
from unlearn_core.train import make_batch

ROWS = [
    {"question": "Where was Ana Lor born?", "answer": "Ana Lor was born in Lima, Peru."},
    {"question": "What genre does Bo Kemi write?", "answer": "Bo Kemi writes science fiction."},
]
LONG = (
    "Ana Lor was born in Lima, Peru, to a father who worked as a tailor and a mother who "
    "taught history at the local school."
)  # 23 words


@pytest.mark.parametrize(
    "alternate",
    [
        LONG,  # the answer itself
        "  ana lor WAS born in lima peru to a father who worked as a tailor and a mother who "
        "taught history at the local school!!  ",  # case, space and punctuation
        LONG.replace("tailor", "baker"),  # one word of a long answer changed (22 of 23 kept)
        LONG + " She still lives there.",  # the answer with text added
        "",
        " ... ",  # nothing but punctuation
    ],
)
def test_near_copies_of_the_answer_are_rejected(alternate):
    assert altpo.near_copies([alternate], [LONG]) == [True]


@pytest.mark.parametrize(
    "alternate",
    [
        "Ana Lor was born in Quito, Ecuador.",  # the question's name kept, every fact changed
        "She grew up in Oslo, the daughter of a fisherman and a nurse.",
    ],
)
def test_genuinely_different_answers_are_kept(alternate):
    answer = ROWS[0]["answer"] if alternate.startswith("Ana") else LONG
    assert altpo.near_copies([alternate], [answer]) == [False]


def test_unusable_slots_reuse_the_questions_alternates_or_fall_back_to_refusals():
    answers = ["Lima, Peru."] * 3 + ["Oslo, Norway."] * 3
    alts = ["Quito.", "lima peru", "Bogota.", "", "Oslo, Norway", "OSLO NORWAY."]
    out = altpo._fill(alts, answers, 3, seed=0)
    assert out[:3] == ["Quito.", "Quito.", "Bogota."]  # the copy takes a usable one in turn
    assert all(a in refusals() for a in out[3:])  # a question with none: refusals
    assert out == altpo._fill(alts, answers, 3, seed=0)  # seeded


def test_make_alternates_gives_five_per_question_deterministically(tiny_model, tiny_tokenizer):
    assert altpo.N_ALTERNATES == 5  # open-unlearning AltPO generate.yaml: repeats 5
    fmt = PromptFormat()

    def make(seed):
        return altpo.make_alternates(
            tiny_model, tiny_tokenizer, fmt, ROWS, seed=seed, instruct=False, max_new_tokens=8
        )

    a, b = make(1), make(1)
    assert len(a) == 5 * len(ROWS)
    assert [r["question"] for r in a] == [r["question"] for r in ROWS for _ in range(5)]
    assert [r["alternate"] for r in a] == [r["alternate"] for r in b]
    assert not any(altpo.near_copies([r["alternate"] for r in a], [r["answer"] for r in a]))
    assert [r["alternate"] for r in make(2)] != [r["alternate"] for r in a]


def test_the_altpo_jobs_forget_alt_view_holds_every_alternate(
    tiny_model, tiny_tokenizer, monkeypatch
):
    """suites._tofu_training, the job's training data, with the model and data loaders swapped
    for the in-process tiny ones (the built-in benchmark would take half a minute to sample)."""
    monkeypatch.setattr(suites, "load_config", lambda data, config: ROWS)
    monkeypatch.setattr(suites, "load_tokenizer", lambda path, trust: tiny_tokenizer)
    monkeypatch.setattr(suites, "load_model", lambda cfg, device: tiny_model)
    setup = types.SimpleNamespace(split="forget10", data="rows", fmt=PromptFormat(), builtin=True)
    suites.alternates.cache_clear()
    try:
        forget, retain = suites._tofu_training(
            setup, tiny_tokenizer, altpo_views(), 0, ModelConfig("tiny"), torch.device("cpu")
        )
        rows = suites.alternates(
            "forget10", "rows", setup.fmt, ModelConfig("tiny"), 0, torch.device("cpu"), False
        )
    finally:
        suites.alternates.cache_clear()
    assert len(forget) == altpo.N_ALTERNATES * len(ROWS) == len(rows) and len(retain) == len(ROWS)
    for example, row in zip(forget, rows, strict=True):
        q, fmt = row["question"], setup.fmt
        assert example["forget_alt"] == encode_qa(tiny_tokenizer, q, row["alternate"], fmt)
        assert example["forget"] == encode_qa(tiny_tokenizer, q, row["answer"], fmt)
    assert len({r["alternate"] for r in rows[:5]}) > 1  # five draws, not one copied five times


def altpo_views() -> tuple[str, ...]:
    from unlearn_core.methods import METHODS

    return METHODS["altpo"].views


@pytest.fixture
def grun_model(tiny_model, tiny_examples, tmp_path):
    """A GRUN-edited tiny model (edits moved off their start, gates open, the anchor recorded by
    one loss call), saved with save_model; returns (model, target folder, its folder, a batch)."""
    base = tmp_path / "target"
    tiny_model.save_pretrained(base)
    model = grun.prepare(load_model(ModelConfig(str(base)), torch.device("cpu")), grun.Hparams())
    forget, retain = tiny_examples
    batch = make_batch(forget, retain, [0, 1, 2], [0, 1, 2], 0, torch.device("cpu"), step=0)
    loss, _ = grun.loss(batch, model, None, grun.Hparams())  # records the anchor
    loss.backward()
    with torch.no_grad():  # an edit well away from its random start, gate open
        for p in model.grun.parameters():
            p.add_(p.grad.sign() * 0.5)
        for edit in model.grun.edits.values():
            edit.gate.bias.fill_(3.0)
    model.eval()
    out = tmp_path / "unlearned"
    save_model(model, out)
    return model, base, out, batch


def test_a_saved_grun_model_reloads_with_its_edit(grun_model):
    model, base, out, batch = grun_model
    inputs = batch["forget"]
    with torch.no_grad():
        edited = forward(model, inputs)
        reloaded = load_model(ModelConfig(str(out)), torch.device("cpu")).eval()
        again = forward(reloaded, inputs)
        target = forward(load_model(ModelConfig(str(base)), torch.device("cpu")).eval(), inputs)
    assert torch.allclose(again, edited, atol=1e-6, rtol=0)
    assert not torch.allclose(target, edited, atol=1e-3)
    assert torch.equal(reloaded.grun.anchor, model.grun.anchor)
    with safe_open(out / "model.safetensors", "pt") as f:
        assert not any(k.startswith("grun.") for k in f.keys())  # kept in its own file
    # what the fix is for: the Hugging Face class alone rebuilds the target
    with torch.no_grad():
        plain = AutoModelForCausalLM.from_pretrained(out).eval()
        assert torch.allclose(forward(plain, inputs), target, atol=1e-6)


def test_inconsistent_grun_files_are_refused_in_one_line(grun_model, tmp_path):
    _, _, out, _ = grun_model
    config = json.loads((out / EDIT_CONFIG).read_text())
    cases = {
        "but no": lambda: (out / EDIT_WEIGHTS).rename(tmp_path / "moved"),
        "not a GRUN edit config": lambda: (out / EDIT_CONFIG).write_text("[1]"),
        "first difference": lambda: (out / EDIT_CONFIG).write_text(
            json.dumps(config | {"rank": config["rank"] + 1})
        ),
        "is not a layer": lambda: (out / EDIT_CONFIG).write_text(
            json.dumps(config | {"layers": [7]})
        ),
        "hidden size": lambda: (out / EDIT_CONFIG).write_text(
            json.dumps(config | {"hidden_size": 8})
        ),
    }
    text = (out / EDIT_CONFIG).read_text()
    for message, damage in cases.items():
        damage()
        with pytest.raises(UserError, match=message) as e:
            load_model(ModelConfig(str(out)), torch.device("cpu"))
        assert "\n" not in str(e.value)
        if not (out / EDIT_WEIGHTS).is_file():
            (tmp_path / "moved").rename(out / EDIT_WEIGHTS)
        (out / EDIT_CONFIG).write_text(text)


def test_grun_on_a_grun_model_is_refused(grun_model):
    _, _, out, _ = grun_model
    reloaded = load_model(ModelConfig(str(out)), torch.device("cpu"))
    with pytest.raises(UserError, match="already carries a GRUN edit"):
        grun.prepare(reloaded, grun.Hparams())
