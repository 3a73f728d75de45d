"""Shared maths: next-token shift and masking, sequence NLL, answer-only KL, NPO and DPO losses,
each against values computed by hand on 2-token toy cases."""

from __future__ import annotations

import math

import torch

from unlearn_core.logprobs import (
    IGNORE,
    answer_kl,
    dpo_loss,
    mean_nll,
    npo_loss,
    sequence_nll,
    token_logprobs,
)


def toy():
    # vocab 2, sequence of 3 positions; the prompt is position 0, the answer positions 1 and 2.
    logits = torch.tensor([[[0.0, math.log(3.0)], [math.log(1.0), math.log(4.0)], [5.0, 5.0]]])
    labels = torch.tensor([[IGNORE, 1, 0]])
    return logits, labels


def test_token_logprobs_shift_and_mask():
    logits, labels = toy()
    logp, mask = token_logprobs(logits, labels)
    # position 0 predicts label 1 with p = 3/4; position 1 predicts label 0 with p = 1/5.
    assert mask.tolist() == [[True, True]]
    assert torch.allclose(logp, torch.tensor([[math.log(0.75), math.log(0.2)]]), atol=1e-6)


def test_sequence_and_mean_nll():
    logits, labels = toy()
    expected = -(math.log(0.75) + math.log(0.2))
    assert math.isclose(sequence_nll(logits, labels).item(), expected, rel_tol=1e-6)
    assert math.isclose(mean_nll(logits, labels).item(), expected / 2, rel_tol=1e-6)


def test_prompt_and_padding_positions_do_not_count():
    logits, labels = toy()
    labels2 = torch.tensor([[IGNORE, IGNORE, 0]])
    assert math.isclose(sequence_nll(logits, labels2).item(), -math.log(0.2), rel_tol=1e-6)


def test_answer_kl_masks_prompt():
    logits, labels = toy()
    ref = torch.zeros_like(logits)  # uniform reference
    # KL(uniform || p) at the two answer-predicting positions (0 and 1); position 2 is unused.
    kl0 = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    kl1 = 0.5 * math.log(0.5 / 0.2) + 0.5 * math.log(0.5 / 0.8)
    assert math.isclose(answer_kl(logits, ref, labels).item(), (kl0 + kl1) / 2, rel_tol=1e-5)
    only_last = torch.tensor([[IGNORE, IGNORE, 0]])
    assert math.isclose(answer_kl(logits, ref, only_last).item(), kl1, rel_tol=1e-5)


def test_npo_and_dpo_by_hand():
    beta = 0.5
    logp, logp_ref = torch.tensor([-2.0, -1.0]), torch.tensor([-1.0, -1.0])
    expect = -(2 / beta) * sum(math.log(1 / (1 + math.exp(beta * d))) for d in (-1.0, 0.0)) / 2
    assert math.isclose(npo_loss(logp, logp_ref, beta).item(), expect, rel_tol=1e-6)
    # NPO at theta == ref is (2/beta) log 2
    assert math.isclose(npo_loss(logp_ref, logp_ref, beta).item(), 4 * math.log(2), rel_tol=1e-6)
    win, lose = torch.tensor([1.0]), torch.tensor([-1.0])
    assert math.isclose(
        dpo_loss(win, lose, beta).item(),
        -(2 / beta) * math.log(1 / (1 + math.exp(-1.0))),
        rel_tol=1e-6,
    )
