"""Hand-computed maths of RMU, PDU, task vectors, SGA, TAU, GRUN and DualOptim on 2-token toy cases:
RMU's control vector and masked MSE, PDU's shifted logit margin and dual ascent, the task-vector
negation, SGA's shifted selection, TAU's snapshot, GRUN's gated LoReFT edit and where it applies,
and the per-phase Adam moments of DualOptim's optimizer."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from unlearn_core.logprobs import IGNORE, forward, mean_nll
from unlearn_core.methods import dual_optim, grun, pdu, rmu, sga, task_vector, tau
from unlearn_core.methods._dual_adam import PhasedAdamW
from unlearn_core.methods._grun_edit import (
    GatedEdit,
    anchor_positions,
    last_prompt_positions,
    located,
)
from unlearn_core.train import make_batch


class FixedLogits(torch.nn.Module):
    """A stand-in causal LM whose logits are w * `base` (w a trainable scalar)."""

    def __init__(self, base: torch.Tensor) -> None:
        super().__init__()
        self.base = base
        self.w = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, input_ids, attention_mask):
        return SimpleNamespace(logits=self.w * self.base)


def two_token_view(batch: int = 1) -> dict[str, torch.Tensor]:
    """Sequences of 3 tokens: one prompt token, then 2 answer tokens (ids 0 and 1)."""
    ids = torch.tensor([[1, 0, 1]] * batch)
    labels = torch.tensor([[IGNORE, 0, 1]] * batch)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def logits_for(probs: list[list[float]], unused: float = 0.3) -> torch.Tensor:
    """(B, 3, 2) logits whose softmax gives the answer tokens (0 then 1) probability p at the two
    predicting positions; the last position predicts nothing and gets p(token 0) = `unused`."""
    rows = []
    for p0, p1 in probs:
        rows.append(
            [
                [math.log(p0), math.log(1 - p0)],
                [math.log(1 - p1), math.log(p1)],
                [math.log(unused), math.log(1 - unused)],
            ]
        )
    return torch.tensor(rows)


def test_rmu_control_vector_and_masked_mse():
    hp = rmu.Hparams(steering_coeff=6.5, seed=3)
    u = rmu.control_vector(8, hp)
    assert torch.allclose(u.norm(), torch.tensor(6.5)) and (u >= 0).all()
    assert torch.equal(u, rmu.control_vector(8, hp))  # fixed for the run
    h = torch.tensor([[[9.0, 9.0], [1.0, 2.0], [3.0, 0.0]]])  # prompt token, 2 answer tokens
    target = torch.zeros_like(h)
    labels = torch.tensor([[IGNORE, 5, 6]])
    # token means of squares: (1 + 4) / 2 = 2.5 and 9 / 2 = 4.5; the prompt token is left out
    assert rmu.masked_mse(h, target, labels).item() == pytest.approx((2.5 + 4.5) / 2)


def test_rmu_prepare_trains_only_down_proj_and_retain_term_starts_at_zero(
    tiny_model, tiny_examples
):
    from unlearn_core.models import frozen_reference

    ref = frozen_reference(tiny_model)
    hp = rmu.Hparams(layer=1, trainable_layers=(1,))
    model = rmu.prepare(tiny_model, hp)
    assert [n for n, p in model.named_parameters() if p.requires_grad] == [
        "model.layers.1.mlp.down_proj.weight"
    ]
    forget, retain = tiny_examples
    batch = make_batch(forget, retain, [0, 1], [0, 1], 0, torch.device("cpu"), step=0)
    _, logs = rmu.loss(batch, model, ref, hp)
    assert logs["retain_mse"] == 0.0 and logs["forget_mse"] > 0


def test_pdu_margin_uses_the_next_token_mask():
    labels = torch.tensor([[IGNORE, 4, 7]])
    z = torch.tensor([[[3.0, 0.0, 0.0], [1.0, 1.0, 1.0], [9.0, 0.0, 0.0]]])
    # positions 0 and 1 predict the two answer tokens: margins 3 - 1 = 2 and 0; position 2 (margin
    # 6) predicts nothing, and open-unlearning's unshifted mask would count it: (0 + 36) / 2
    assert pdu.margin_loss(z, labels).item() == pytest.approx((4 + 0) / 2)


def test_pdu_dual_ascent_per_micro_batch_after_warmup():
    """open-unlearning's order: each micro-batch's loss uses lambda, then lambda moves by
    eta * (R - eps) with that micro-batch's R (two micro-batches per optimizer step here)."""
    hp = pdu.Hparams(alpha=100.0, dual_step_size=5.0, retain_loss_eps=0.3, dual_warmup_steps=1)
    dual = pdu.DualVariable(hp.alpha, torch.device("cpu"))
    seen = [
        dual.observe(s, torch.tensor(r), hp).item()
        for s, r in [(0, 0.5), (0, 0.7), (1, 0.2), (1, 0.6), (2, 0.0), (3, 0.0)]
    ]
    # step 0 is warm-up; then 100 - 5 * 0.1 = 99.5, + 5 * 0.3 = 101, - 5 * 0.3 = 99.5
    assert seen == pytest.approx([100, 100, 100, 99.5, 101.0, 99.5])
    small = pdu.DualVariable(1.0, torch.device("cpu"))
    hp0 = pdu.Hparams(alpha=1.0, dual_step_size=5.0, retain_loss_eps=0.3, dual_warmup_steps=0)
    small.observe(0, torch.tensor(0.0), hp0)
    assert small.observe(0, torch.tensor(0.0), hp0).item() == 0.0  # max(0, 1 - 1.5)


def test_task_vector_negation():
    model, ref = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        ref.weight.fill_(1.0)
        model.weight.fill_(1.5)  # fine-tuned: task vector +0.5
    task_vector.finalize(model, ref, task_vector.Hparams(scale=2.0))
    assert model.weight.item() == pytest.approx(1.0 - 2.0 * 0.5)


def test_sga_selects_by_shifted_mean_probability():
    model = FixedLogits(logits_for([[0.9, 0.8], [0.5, 0.4]], unused=0.01))
    batch = {"forget": two_token_view(2), "step": 0}
    loss, logs = sga.loss(batch, model, None, sga.Hparams(threshold=0.7))
    # row 0 (mean p 0.85) is selected, row 1 (0.45) is not: L = -NLL_sum(row 0)
    assert loss.item() == pytest.approx(math.log(0.9) + math.log(0.8), abs=1e-6)
    assert logs["selected_frac"] == 0.5
    loss, _ = sga.loss(batch, model, None, sga.Hparams(threshold=0.95))  # none: top-1 fallback
    assert loss.item() == pytest.approx(math.log(0.9) + math.log(0.8), abs=1e-6)


def test_tau_negates_around_the_sga_snapshot():
    model = tau.prepare(FixedLogits(logits_for([[0.9, 0.8]])), tau.Hparams())
    hp = tau.Hparams(sga_steps=2, scale=1.0)
    batch = {"forget": two_token_view(), "step": 0}
    _, logs = tau.loss(batch, model, None, hp)
    assert "selected_frac" in logs and not model.tau_snapshot.taken  # SGA phase
    with torch.no_grad():
        model.w.fill_(2.0)  # the SGA model
    tau.loss({**batch, "step": 2}, model, None, hp)
    with torch.no_grad():
        model.w.fill_(2.5)  # fine-tuned on the forget set
    tau.loss({**batch, "step": 3}, model, None, hp)  # the snapshot is taken once
    tau.finalize(model, None, hp)
    assert model.w.item() == pytest.approx(2.0 - 1.0 * (2.5 - 2.0))
    assert "tau_snapshot" not in dict(model.named_children())


def test_grun_gated_loreft_edit():
    edit = GatedEdit(2, 1, torch.Generator().manual_seed(0))
    with torch.no_grad():
        edit.rotate.copy_(torch.tensor([[2.0, 0.0]]))  # R = [1, 0] after orthonormalisation
        edit.source.weight.copy_(torch.tensor([[0.0, 1.0]]))
        edit.source.bias.fill_(0.5)
        edit.gate.weight.zero_()
        edit.gate.bias.zero_()  # g = sigmoid(0) = 1/2
    out, gate = edit(torch.tensor([[3.0, 4.0]]))
    # W h + b - R h = 4 + 0.5 - 3 = 1.5; h + g R^T 1.5 = [3 + 0.75, 4]
    assert out[0].tolist() == pytest.approx([3.75, 4.0]) and gate.item() == 0.0


def test_grun_positions_from_labels_and_from_the_anchor():
    labels = torch.tensor([[IGNORE, IGNORE, IGNORE, 8, 9], [IGNORE, IGNORE, 7, 9, IGNORE]])
    assert last_prompt_positions(labels).tolist() == [2, 1]
    ids = torch.tensor([[5, 6, 7, 5, 6], [1, 5, 6, 3, 3], [1, 2, 3, 4, 4]])
    assert anchor_positions(ids, torch.tensor([5, 6])).tolist() == [4, 2, -1]  # last occurrence


def test_grun_edits_evaluation_where_training_does(tiny_model, tiny_examples):
    forget, retain = tiny_examples
    batch = make_batch(forget, retain, [0, 1, 2], [0, 1, 2], 0, torch.device("cpu"), step=0)
    f = batch["forget"]
    with torch.no_grad():
        plain = forward(tiny_model, f)
    model = grun.prepare(tiny_model, grun.Hparams(inner="npo"))
    assert all(n.startswith("grun.") for n, p in model.named_parameters() if p.requires_grad)
    with torch.no_grad():
        assert torch.equal(forward(model, f), plain)  # no anchor yet: no edit
        grun.loss(batch, model, None, grun.Hparams(inner="npo"))  # records the anchor
        with located(last_prompt_positions(f["labels"])):
            trained = forward(model, f)
        assert torch.equal(forward(model, f), trained)  # evaluation finds the same positions
        assert not torch.equal(trained, plain)
        with located(None):
            assert torch.equal(forward(model, f), plain)  # NPO's reference pass


def test_dual_optim_phases_and_parts(tiny_model, tiny_examples):
    assert [dual_optim.phase(1, 5, s) for s in range(7)] == [0, 1, 1, 1, 1, 1, 0]
    forget, retain = tiny_examples
    hp = dual_optim.Hparams(base="grad_diff", gamma=0.5, alpha=2.0)
    for step, view, weight in [(0, "forget", -0.5), (1, "retain", 2.0)]:
        batch = make_batch(forget, retain, [0, 1], [0, 1], 0, torch.device("cpu"), step=step)
        loss, _ = dual_optim.loss(batch, tiny_model, None, hp)
        with torch.no_grad():
            nll = mean_nll(forward(tiny_model, batch[view]), batch[view]["labels"])
        assert loss.item() == pytest.approx(weight * nll.item(), rel=1e-5)


@pytest.mark.parametrize("base", list(dual_optim.BASES))
def test_dual_optim_parts_are_the_base_methods_terms(base, tiny_model, tiny_tokenizer):
    import importlib

    from unlearn_core.data.format import PromptFormat
    from unlearn_core.data.views import build_views
    from unlearn_core.models import frozen_reference

    rows = [
        {"question": "Where was Ana Lor born?", "answer": "Ana Lor was born in Lima."},
        {"question": "What does Bo Kemi write?", "answer": "Bo Kemi writes poems."},
    ]
    forget, retain = build_views(tiny_tokenizer, PromptFormat(), rows, rows, dual_optim.VIEWS)
    module = importlib.import_module(f"unlearn_core.methods.{base}")
    ref = frozen_reference(tiny_model)
    hp = dual_optim.Hparams(base=base, gamma=1.0, alpha=1.0)
    for step, weights in [(0, {"gamma": 1.0, "alpha": 0.0}), (1, {"gamma": 0.0, "alpha": 1.0})]:
        batch = make_batch(forget, retain, [0, 1], [1, 0], 0, torch.device("cpu"), step=step)
        with torch.no_grad():
            mine, _ = dual_optim.loss(batch, tiny_model, ref, hp)
            theirs, _ = module.loss(batch, tiny_model, ref, module.Hparams(**weights))
        assert mine.item() == pytest.approx(theirs.item(), rel=1e-5, abs=1e-6)


def test_phased_adam_keeps_one_moment_set_per_phase():
    p = torch.nn.Parameter(torch.tensor([1.0]))
    opt = PhasedAdamW(
        [p], lr=0.1, weight_decay=0.0, phase_of=lambda s: [0, 1, 0][s], lr_ratios=(0.5, 1.0)
    )
    values = []
    for g in (2.0, -3.0, 2.0):
        p.grad = torch.tensor([g])
        opt.step()
        values.append(p.item())
    # 1st step of fresh moments moves by -lr * sign(g): forget lr 0.05, then retain lr 0.1; the
    # 3rd step reuses the forget moments (m 0.38, v 0.007996: m_hat/sqrt(v_hat) = 2/2 = 1)
    assert values == pytest.approx([0.95, 1.05, 1.0], abs=1e-6)


def test_phased_adam_with_one_phase_is_adamw():
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5))
    b = torch.nn.Parameter(a.detach().clone())
    mine = PhasedAdamW([a], lr=0.01, weight_decay=0.1, phase_of=lambda s: 0, lr_ratios=(1.0,))
    ref = torch.optim.AdamW([b], lr=0.01, weight_decay=0.1)
    for _ in range(4):
        g = torch.randn(5)
        a.grad, b.grad = g.clone(), g.clone()
        mine.step()
        ref.step()
    assert torch.allclose(a, b, atol=1e-6)
