"""Each of SimNPO, IDK+GD, IdkDPO, ME+GD, IDK+AP, UNDIAL, WGA, SatImp, CE-U, AltPO and PALU against
a hand-computed value on a toy sequence (one prompt token, two answer tokens) whose logits are fixed
parameters; plus the batch views they read (refusals, alternates, sensitive-token labels) and
AltPO's seeded alternate sampling on the tiny in-process model."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from unlearn_core.data.format import PromptFormat, encode_qa
from unlearn_core.data.views import build_views, fallback_spans, refusals
from unlearn_core.errors import UserError
from unlearn_core.logprobs import IGNORE
from unlearn_core.methods import METHODS, altpo, palu

LN2, LN3 = math.log(2), math.log(3)


class Fixed(torch.nn.Module):
    """A 'causal LM' whose logits are a fixed (T, V) parameter, whatever the input."""

    def __init__(self, logits: list[list[float]]):
        super().__init__()
        self.z = torch.nn.Parameter(torch.tensor(logits, dtype=torch.float32))

    def forward(self, input_ids, attention_mask):
        return SimpleNamespace(logits=self.z.expand(input_ids.shape[0], -1, -1))


def view(*labels: int) -> dict[str, torch.Tensor]:
    n = len(labels)
    return {
        "input_ids": torch.zeros(1, n, dtype=torch.long),
        "attention_mask": torch.ones(1, n, dtype=torch.long),
        "labels": torch.tensor([labels]),
    }


def hp(name: str, **values):
    return METHODS[name].make_hparams(values)


# Position 0 predicts the first answer token with p = (1/2, 1/2); position 1 predicts the second
# with p = (3/4, 1/4); the last position predicts nothing. Labels [-100, 0, 0]: NLLs ln2, ln(4/3).
TWO = [[0.0, 0.0], [LN3, 0.0], [5.0, -5.0]]
L1, L2 = LN2, math.log(4 / 3)


def logsig(x: float) -> float:
    return -math.log1p(math.exp(-x))


def test_simnpo_length_normalised_with_margin():
    model = Fixed(TWO)
    loss, _ = METHODS["simnpo"].loss(
        {"forget": view(IGNORE, 0, 0)},
        model,
        None,
        hp("simnpo", beta=2.0, delta=0.1, retain_loss="none", gamma=1.0),
    )
    expected = -(2 / 2.0) * logsig(2.0 * ((L1 + L2) / 2 - 0.1))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_idk_nll_is_refusal_nll_plus_retain_nll():
    model = Fixed(TWO)
    batch = {"forget_idk": view(IGNORE, 1, 1), "retain": view(IGNORE, IGNORE, 0)}
    loss, _ = METHODS["idk_nll"].loss(batch, model, None, hp("idk_nll", alpha=2.0))
    # refusal tokens 1, 1: NLL ln2 and ln4; retain: only the second token, ln(4/3)
    assert loss.item() == pytest.approx((LN2 + math.log(4)) / 2 + 2 * L2, rel=1e-6)


def test_idk_dpo_prefers_refusal_relative_to_reference():
    model, ref = Fixed(TWO), Fixed([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    batch = {"forget": view(IGNORE, 0, 0), "forget_idk": view(IGNORE, 1, 1)}
    loss, _ = METHODS["idk_dpo"].loss(batch, model, ref, hp("idk_dpo", retain_loss="none"))
    r_win = -(LN2 + math.log(4)) + 2 * LN2  # log pi(idk) - log pi_ref(idk)
    r_lose = -(L1 + L2) + 2 * LN2
    assert loss.item() == pytest.approx(-(2 / 0.1) * logsig(0.1 * (r_win - r_lose)), rel=1e-6)


def test_altpo_is_dpo_with_the_alternate_as_winner():
    model, ref = Fixed(TWO), Fixed([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    batch = {"forget": view(IGNORE, 0, 0), "forget_alt": view(IGNORE, 0, 1)}
    loss, _ = METHODS["altpo"].loss(batch, model, ref, hp("altpo", beta=1.0, retain_loss="none"))
    r_win = -(LN2 + math.log(4)) + 2 * LN2
    r_lose = -(L1 + L2) + 2 * LN2
    assert loss.item() == pytest.approx(-2 * logsig(r_win - r_lose), rel=1e-6)


def test_me_gd_is_kl_from_uniform_on_answer_tokens():
    # position 0 uniform over 4 (KL 0); position 1 p = (1/2, 1/4, 1/8, 1/8): KL(U||p) = ln2 / 4
    z = [[0.0] * 4, [math.log(4), math.log(2), 0.0, 0.0], [9.0, 0.0, 0.0, 0.0]]
    batch = {"forget": view(IGNORE, 0, 0), "retain": view(IGNORE, IGNORE, 0)}
    loss, _ = METHODS["me_gd"].loss(batch, Fixed(z), None, hp("me_gd", gamma=1.0, alpha=1.0))
    retain_nll = -math.log(0.5)
    assert loss.item() == pytest.approx((0 + LN2 / 4) / 2 + retain_nll, rel=1e-6)


def test_idk_ap_keeps_retain_answer_above_refusal():
    model = Fixed(TWO)
    batch = {
        "forget_idk": view(IGNORE, 1, 1),
        "retain": view(IGNORE, 0, 0),
        "retain_idk": view(IGNORE, 1, 1),
    }
    loss, _ = METHODS["idk_ap"].loss(batch, model, None, hp("idk_ap", beta=0.5))
    nll_idk, nll_ans = LN2 + math.log(4), L1 + L2
    ap = -(1 / 0.5) * logsig(0.5 * (nll_idk - nll_ans))
    assert loss.item() == pytest.approx(nll_idk / 2 + ap, rel=1e-6)


def test_undial_distils_adjusted_teacher_on_answer_tokens_only():
    # two prompt tokens; the prompt position (0) has extreme logits that must not count
    model = Fixed([[50.0, -50.0], [0.0, 0.0], [LN3, 0.0], [0.0, 0.0]])
    ref = Fixed([[-50.0, 50.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    batch = {"forget": view(IGNORE, IGNORE, 0, 0)}  # no "retain": alpha 0 must skip its forward
    loss, _ = METHODS["undial"].loss(batch, model, ref, hp("undial", beta=LN3))
    # teacher softmax((0, 0) - ln3 * onehot(0)) = (1/4, 3/4) at both answer positions
    ce1 = -(0.25 * math.log(0.5) + 0.75 * math.log(0.5))
    ce2 = -(0.25 * math.log(0.75) + 0.75 * math.log(0.25))
    assert loss.item() == pytest.approx((ce1 + ce2) / 2, rel=1e-5)


def test_wga_weights_are_detached_probabilities():
    model = Fixed(TWO)
    loss, _ = METHODS["wga"].loss(
        {"forget": view(IGNORE, 0, 0)}, model, None, hp("wga", beta=2.0, retain_loss="none")
    )
    assert loss.item() == pytest.approx((0.25 * -L1 + 0.5625 * -L2) / 2, rel=1e-6)
    loss.backward()
    # d/dz of w * log p_y with w constant: w * (onehot(y) - p), halved by the token mean
    expected = torch.tensor([[0.25 * 0.5, 0.25 * -0.5], [0.5625 * 0.25, 0.5625 * -0.25], [0, 0]])
    assert torch.allclose(model.z.grad, expected / 2, atol=1e-6)


def test_satimp_weights():
    loss, _ = METHODS["satimp"].loss(
        {"forget": view(IGNORE, 0, 0)},
        Fixed(TWO),
        None,
        hp("satimp", beta1=2.0, beta2=1.0, gamma=1.0, retain_loss="none"),
    )
    w1, w2 = 0.5**2 * 0.5, 0.75**2 * 0.25
    assert loss.item() == pytest.approx((w1 * -L1 + w2 * -L2) / 2, rel=1e-6)


def test_ceu_cross_entropy_to_own_distribution_without_true_token():
    # position 1: p = (1/2, 1/4, 1/4), true token 0 -> target (0, 1/2, 1/2), CE = ln 4
    z = [[LN2, 0.0, 0.0], [LN2, 0.0, 0.0], [0.0, 0.0, 0.0]]
    batch = {"forget": view(IGNORE, 1, 0)}
    loss, _ = METHODS["ceu"].loss(batch, Fixed(z), None, hp("ceu"))  # skips the first token
    assert loss.item() == pytest.approx(math.log(4), rel=1e-6)
    both, _ = METHODS["ceu"].loss(batch, Fixed(z), None, hp("ceu", ignore_first_n_answer_tokens=0))
    # position 0, true token 1: target (2/3, 0, 1/3), CE = -(2/3 ln 1/2 + 1/3 ln 1/4)
    ce0 = -(2 / 3 * math.log(0.5) + 1 / 3 * math.log(0.25))
    assert both.item() == pytest.approx((ce0 + math.log(4)) / 2, rel=1e-6)


def test_palu_span_prefix():
    mask = torch.tensor([[1, 1, 1, 0, 1, 1, 0, 1]], dtype=torch.bool)
    assert palu.span_prefix(mask, 2).long().tolist() == [[1, 1, 0, 0, 1, 1, 0, 1]]
    assert palu.span_prefix(mask, 1).long().tolist() == [[1, 0, 0, 0, 1, 0, 0, 1]]
    assert torch.equal(palu.span_prefix(mask, -1), mask)


def test_palu_flattens_reference_topk_and_keeps_non_sensitive_close():
    # position 0 (sensitive): z = (3, 0, 0), mean 1; the reference's top-1 id is 1: (0 - 1)^2 = 1
    # position 1 (non-sensitive): KL(p || p_ref) with p = (1/2, 1/4, 1/4), p_ref uniform
    model = Fixed([[3.0, 0.0, 0.0], [LN2, 0.0, 0.0], [0.0, 0.0, 0.0]])
    ref = Fixed([[0.0, 5.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    batch = {
        "forget": view(IGNORE, 0, 0),
        "forget_sensitive": view(IGNORE, 0, IGNORE),
        "retain": view(IGNORE, IGNORE, 0),
    }
    loss, _ = METHODS["palu"].loss(batch, model, ref, hp("palu", alpha=0.5))
    kl = 0.5 * math.log(1.5) + 2 * 0.25 * math.log(0.75)
    retain_nll = LN2  # retain's one answer token, predicted at position 1 with p = 1/2
    assert loss.item() == pytest.approx(1.0 + 0.5 * (retain_nll + kl), rel=1e-6)


# --- views ---------------------------------------------------------------------------------

ROWS = [
    {
        "question": "Where was Ana Lor born?",
        "answer": "Ana Lor was born in Lima, Peru.",
        "answer_spans": [[20, 24]],
    },
    {
        "question": "What genre does Bo Kemi write?",
        "answer": "Bo Kemi writes science fiction.",
        "alternate": "Bo Kemi writes poetry.",
    },
]


def test_refusals_and_fallback_spans():
    assert len(refusals()) >= 100 and len(set(refusals())) == len(refusals())
    answer = "The author Ana Lor was born in Lima, Peru, in 1961."
    words = [answer[a:b] for a, b in fallback_spans(answer)]
    assert words == ["Ana", "Lor", "Lima", "Peru", "1961"]


def test_idk_views_are_seeded_refusals(tiny_tokenizer):
    fmt = PromptFormat()
    tok = tiny_tokenizer
    f1, r1 = build_views(tok, fmt, ROWS, ROWS, ("forget_idk", "retain", "retain_idk"), seed=3)
    f2, _ = build_views(tok, fmt, ROWS, ROWS, ("forget_idk", "retain", "retain_idk"), seed=3)
    assert [e["forget_idk"] for e in f1] == [e["forget_idk"] for e in f2]
    assert set(f1[0]) == {"forget", "forget_idk"} and set(r1[0]) == {"retain", "retain_idk"}
    decoded = tok.decode(
        [t for t in f1[0]["forget_idk"]["labels"] if t != IGNORE], skip_special_tokens=True
    ).strip()
    assert decoded in refusals()
    assert f1[0]["forget"] == encode_qa(tok, ROWS[0]["question"], ROWS[0]["answer"], fmt)


def test_alternate_and_sensitive_views(tiny_tokenizer):
    tok, fmt = tiny_tokenizer, PromptFormat()
    with pytest.raises(UserError, match="alternate"):
        build_views(tok, fmt, ROWS, [], ("forget_alt",))
    forget, retain = build_views(tok, fmt, ROWS, [], ("forget_sensitive",))
    assert retain == []
    sens, full = forget[0]["forget_sensitive"], forget[0]["forget"]
    assert sens["input_ids"] == full["input_ids"]
    kept = [t for t in sens["labels"] if t != IGNORE]
    assert kept and tok.decode(kept).strip() == "Lima"  # the span [20, 24) of the answer
    # no spans on the second row: capitalised words are the fallback
    kept2 = tok.decode([t for t in forget[1]["forget_sensitive"]["labels"] if t != IGNORE])
    assert "Bo" in kept2 and "Kemi" in kept2 and "science" not in kept2


def test_make_alternates_is_seeded_and_leaves_global_rng(tiny_model, tiny_tokenizer):
    fmt = PromptFormat()
    state = torch.random.get_rng_state()
    a = altpo.make_alternates(
        tiny_model, tiny_tokenizer, fmt, ROWS, seed=1, n=2, instruct=False, max_new_tokens=8
    )
    assert torch.equal(state, torch.random.get_rng_state())
    b = altpo.make_alternates(
        tiny_model, tiny_tokenizer, fmt, ROWS, seed=1, n=2, instruct=False, max_new_tokens=8
    )
    assert [r["alternate"] for r in a] == [r["alternate"] for r in b]
    assert [r["question"] for r in a] == [ROWS[0]["question"]] * 2 + [ROWS[1]["question"]] * 2
    assert all(r["alternate"] for r in a) and "alternate" not in ROWS[0]
    forget, _ = build_views(tiny_tokenizer, fmt, a, [], ("forget_alt",))
    assert len(forget) == 4 and "forget_alt" in forget[0]
