"""The unlearning loop: step counting in both step accountings (hand-computed tables, the steps,
loss scaling and learning rates the loop really takes, resuming with a step carried across an
epoch), seeded per-rank pairing, LR schedule, TrialDiverged on a non-finite loss, parameters
changing, bit-for-bit determinism on CPU for a fixed seed, resuming from an epoch's state,
stopping early on the full schedule (stop_after), weight decay sparing biases and norms, and
JobConfig <-> dict."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from unlearn_core.errors import TrialDiverged, UserError
from unlearn_core.methods import get_method
from unlearn_core.steps import ACCOUNTINGS, decay_groups, lr_lambda, step_plan
from unlearn_core.train import LoopState, TrainConfig, epoch_batches, unlearn


def run(model, examples, tok, method="grad_ascent", **cfg):
    forget, retain = examples
    m = get_method(method)
    hp = m.make_hparams({})
    ref = None
    if m.needs_reference(hp):
        from unlearn_core.models import frozen_reference

        ref = frozen_reference(model)
    kw = {"lr": 1e-3, "epochs": 2, "batch_size": 2, "grad_accum": 1, "warmup_epochs": 0} | cfg
    return unlearn(model, m, hp, TrainConfig(**kw), forget, retain, tok.pad_token_id, ref_model=ref)


def test_steps_and_effective_batch(tiny_model, tiny_examples, tiny_tokenizer):
    res = run(tiny_model, tiny_examples, tiny_tokenizer, epochs=3, batch_size=1, grad_accum=2)
    assert (
        res.optimizer_steps
        == 3 * 2
        == 3 * step_plan(4, TrainConfig(batch_size=1, grad_accum=2), 1).steps_per_epoch
    )
    assert res.effective_batch == 2 and res.world_size == 1 and res.seed == 0
    assert len(res.logs) == res.optimizer_steps and all(math.isfinite(x["loss"]) for x in res.logs)


def test_parameters_change(tiny_model, tiny_examples, tiny_tokenizer):
    before = {n: p.detach().clone() for n, p in tiny_model.named_parameters()}
    run(tiny_model, tiny_examples, tiny_tokenizer, method="npo")
    changed = [n for n, p in tiny_model.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == len(before)


def test_same_seed_same_result_different_seed_differs(tiny_tokenizer, tiny_examples):
    from conftest import make_tiny_model

    finals = []
    for seed in (3, 3, 4):
        model = make_tiny_model(tiny_tokenizer)
        res = run(model, tiny_examples, tiny_tokenizer, method="grad_diff", seed=seed, batch_size=1)
        finals.append((torch.cat([p.flatten() for p in model.parameters()]), res.logs))
    assert torch.equal(finals[0][0], finals[1][0]) and finals[0][1] == finals[1][1]
    assert not torch.equal(finals[0][0], finals[2][0])


def test_nan_loss_raises_trial_diverged(tiny_model, tiny_examples, tiny_tokenizer):
    with torch.no_grad():
        tiny_model.model.norm.weight.fill_(float("nan"))
    with pytest.raises(TrialDiverged) as err:
        run(tiny_model, tiny_examples, tiny_tokenizer)
    assert err.value.step == 0 and "step 0" in str(err.value)


def test_pairing_is_seeded_per_rank_and_shards_forget():
    cfg = TrainConfig(batch_size=2)

    def gens(rank):
        return torch.Generator().manual_seed(1), torch.Generator().manual_seed(10 + rank)

    r0 = epoch_batches(8, 100, cfg, *gens(0), rank=0, world=2)
    r1 = epoch_batches(8, 100, cfg, *gens(1), rank=1, world=2)
    f0 = {i for f, _ in r0 for i in f}
    f1 = {i for f, _ in r1 for i in f}
    assert not f0 & f1 and len(f0) == len(f1) == 4
    assert [r for _, r in r0] != [r for _, r in r1]
    again = epoch_batches(8, 100, cfg, *gens(0), rank=0, world=2)
    assert again == r0
    # the global RNG is never touched
    state = torch.get_rng_state()
    epoch_batches(8, 100, cfg, *gens(0), rank=0, world=1)
    assert torch.equal(state, torch.get_rng_state())


def test_schedules():
    cfg = TrainConfig(schedule="linear")
    f = lr_lambda(cfg, total=10, warmup=2)
    assert f(0) < f(1) < f(2) == 1.0 and f(9) < f(5) and f(10) == 0.0
    g = lr_lambda(TrainConfig(schedule="cosine"), total=10, warmup=0)
    assert g(0) == 1.0 and math.isclose(g(5), 0.5) and g(10) < 1e-9
    assert lr_lambda(TrainConfig(schedule="constant"), 10, 0)(7) == 1.0


@pytest.mark.parametrize(
    "bad", [{"lr": 0}, {"lr": -1e-5}, {"epochs": 0}, {"batch_size": 0}, {"schedule": "step"}]
)
def test_bad_train_config(bad):
    with pytest.raises(UserError):
        TrainConfig(**bad)


def test_step_accounting_is_checked_and_has_a_flag_with_help():
    import argparse

    from unlearn_sweep.flags import add_fields

    with pytest.raises(UserError) as err:
        TrainConfig(step_accounting="hf")
    assert str(err.value) == (
        "unknown step_accounting 'hf'; accepted: unlearn-sweep, open-unlearning"
    )
    p = argparse.ArgumentParser()
    add_fields(p, TrainConfig, ["step_accounting"], choices={"step_accounting": ACCOUNTINGS})
    text = " ".join(p.format_help().split())
    assert "--step-accounting {unlearn-sweep,open-unlearning}" in text
    assert "HF Trainer's" in text and "(default: unlearn-sweep)" in text
    assert p.parse_args(["--step-accounting", "open-unlearning"]).step_accounting == (
        "open-unlearning"
    )


def test_resume_from_epoch_state_matches_uninterrupted_run(tiny_tokenizer, tiny_examples):
    from conftest import make_tiny_model

    m = get_method("grad_diff")
    hp = m.make_hparams({})
    cfg = TrainConfig(lr=1e-3, epochs=3, batch_size=1, grad_accum=2, warmup_epochs=1, seed=5)
    forget, retain = tiny_examples
    states = {}
    full = make_tiny_model(tiny_tokenizer)
    res = unlearn(
        full,
        m,
        hp,
        cfg,
        forget,
        retain,
        tiny_tokenizer.pad_token_id,
        on_epoch_end=lambda e, _, s: states.setdefault(e, s),
    )
    resumed = make_tiny_model(tiny_tokenizer, seed=99)  # different init: the state must overwrite
    res2 = unlearn(
        resumed, m, hp, cfg, forget, retain, tiny_tokenizer.pad_token_id, resume=states[1]
    )
    for (n, a), (_, b) in zip(full.named_parameters(), resumed.named_parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), n
    assert res2.optimizer_steps == res.optimizer_steps and res2.logs == res.logs


def test_stop_after_equals_the_first_epochs_of_the_full_schedule(tiny_tokenizer, tiny_examples):
    from conftest import make_tiny_model

    m = get_method("grad_diff")
    hp = m.make_hparams({})
    cfg = TrainConfig(
        lr=1e-3, epochs=4, batch_size=1, grad_accum=2, warmup_epochs=1, seed=2, schedule="cosine"
    )
    forget, retain = tiny_examples
    seen = {}

    def at_epoch_2(epoch, model, state):
        if epoch == 2:
            seen["params"] = [p.detach().clone() for p in model.parameters()]
            seen["logs"] = state.logs

    full = make_tiny_model(tiny_tokenizer)
    unlearn(full, m, hp, cfg, forget, retain, tiny_tokenizer.pad_token_id, on_epoch_end=at_epoch_2)
    short = make_tiny_model(tiny_tokenizer)
    res = unlearn(
        short,
        m,
        hp,
        dataclasses.replace(cfg, stop_after=2),
        forget,
        retain,
        tiny_tokenizer.pad_token_id,
    )
    assert res.epochs == 2 and res.optimizer_steps == 2 * step_plan(4, cfg, 1).steps_per_epoch == 4
    assert res.logs == seen["logs"]  # same losses and learning rates
    # the schedule is the 4-epoch one (8 steps, 2 warmup), not one squeezed into 2 epochs
    lrs = [x["lr"] for x in res.logs]
    assert lrs == pytest.approx([cfg.lr * lr_lambda(cfg, 8, 2)(s + 1) for s in range(4)])
    assert lrs != pytest.approx([cfg.lr * lr_lambda(cfg, 4, 2)(s + 1) for s in range(4)])
    for a, b in zip(seen["params"], short.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("stop_after", [0, 5])
def test_stop_after_must_lie_within_epochs(stop_after):
    with pytest.raises(UserError, match="stop_after"):
        TrainConfig(epochs=4, stop_after=stop_after)


def test_job_dict_round_trip_is_json_and_yaml_safe():
    import json

    import yaml

    from unlearn_core.evaluate import EvalConfig
    from unlearn_core.job import JobConfig, job_from_dict, job_to_dict
    from unlearn_core.source import Source

    job = JobConfig(
        method="grun",
        hparams={"layers": (0, 1), "gate_weight": 2.0},
        train=TrainConfig(lr=3e-4, epochs=5, stop_after=3, schedule="cosine"),
        eval=EvalConfig(generate=False),
        source=Source(split="forget05", model="org/model"),  # grun takes no LoRA
    )
    d = job_to_dict(job)
    assert d["train"]["stop_after"] == 3 and d["hparams"]["layers"] == [0, 1]
    assert json.loads(json.dumps(d)) == d and yaml.safe_load(yaml.safe_dump(d)) == d
    assert job_from_dict(d) == job and job_to_dict(job_from_dict(d)) == d
    assert job_from_dict({"method": "npo"}) == JobConfig(method="npo")
    assert job_from_dict({"method": "npo", "train": {"lr": "1e-5"}}).train.lr == 1e-5  # YAML 1.1


@pytest.mark.parametrize(
    "d,message",
    [
        ({"method": "npo", "epochs": 3}, "job has no field 'epochs'; accepted: method, hparams,"),
        ({"method": "npo", "train": {"epoch": 3}}, "job.train has no field 'epoch'; accepted: lr,"),
        ({"method": "npo", "source": {"lora": 8}}, "job.source has no field 'lora'"),
        ({"method": "npo", "train": {"epochs": "3"}}, "job.train.epochs must be int"),
        ({"method": "npo", "train": {"lr": True}}, "job.train.lr must be float"),
        ({"hparams": {}}, "job needs field 'method'"),
        ({"method": "npo", "hparams": {"zeta": 1}}, "npo has no hyperparameter 'zeta'"),
    ],
)
def test_job_from_dict_rejects_unknown_keys_and_bad_types(d, message):
    from unlearn_core.job import job_from_dict

    with pytest.raises(UserError) as err:
        job_from_dict(d)
    assert message in str(err.value)


# Step accounting at open-unlearning's TOFU default, batch 8 x accumulation 4 x 10 epochs on one
# GPU, warmup 1 epoch; n = rows of forget01/05/10, M = ceil(n / 8) micro-batches per epoch.
# unlearn-sweep: ceil(M / 4) steps per epoch (the last one short) x 10; warmup int(1 x that).
# open-unlearning (HF Trainer 4.45.1): max(M // 4, 1) x 10 steps; warmup int(n // 32); a step
# falls on every 4th micro-batch counted across epochs, and training stops at the last step:
# forget01 after 40 micro-batches (epoch 8 of 10), forget05 after 240 (15 of epoch 10's 25),
# forget10 after 480 (30 of epoch 10's 50).
STEP_TABLE = [
    # accounting, n, M, steps/epoch, total steps, warmup, last data epoch, its micro-batches
    ("unlearn-sweep", 40, 5, 2, 20, 2, 10, 5),
    ("unlearn-sweep", 200, 25, 7, 70, 7, 10, 25),
    ("unlearn-sweep", 400, 50, 13, 130, 13, 10, 50),
    ("open-unlearning", 40, 5, 1, 10, 1, 8, 5),
    ("open-unlearning", 200, 25, 6, 60, 6, 10, 15),
    ("open-unlearning", 400, 50, 12, 120, 12, 10, 30),
]


@pytest.mark.parametrize("accounting,n,micro,per_epoch,total,warmup,last,in_last", STEP_TABLE)
def test_step_plan_matches_the_hand_computed_table(
    accounting, n, micro, per_epoch, total, warmup, last, in_last
):
    plan = step_plan(n, TrainConfig(step_accounting=accounting), world=1)
    assert (plan.micro_per_epoch, plan.steps_per_epoch, plan.total_steps) == (
        micro,
        per_epoch,
        total,
    )
    assert (plan.warmup_steps, plan.last_epoch, plan.micro_in(last - 1)) == (warmup, last, in_last)
    assert plan.run_steps == len(plan.ends) == total
    if accounting == "open-unlearning":  # every step holds 4 micro-batches, across epochs too
        assert plan.ends == tuple(range(3, 4 * total, 4))


def test_step_plan_edge_cases():
    ou = {"step_accounting": "open-unlearning"}
    # M = 2 <= accumulation 3: HF also steps on each epoch's last micro-batch (global 1 and 3)
    # besides every 3rd (global 2); 3 steps are due, so the run ends after epoch 2 of 3
    short = step_plan(4, TrainConfig(batch_size=2, grad_accum=3, epochs=3, **ou), world=1)
    assert short.ends == (1, 2, 3) and short.last_epoch == 2 and short.warmup_steps == 0
    assert [short.group(g) for g in range(4)] == [(2, False), (2, True), (1, True), (1, True)]
    assert short.divisor(1) == 3  # accelerate divides every micro loss by the accumulation
    # stop_after cuts the run, not the schedule: forget05 for 3 of 10 epochs = 75 micro-batches,
    # 18 steps of 60; forget01 stops at its step budget (epoch 8) before stop_after=9
    f05 = step_plan(200, TrainConfig(stop_after=3, **ou), world=1)
    assert (f05.last_epoch, f05.run_steps, f05.total_steps) == (3, 18, 60)
    assert step_plan(40, TrainConfig(stop_after=9, **ou), world=1).last_epoch == 8
    ours = step_plan(200, TrainConfig(stop_after=3), world=1)
    assert (ours.last_epoch, ours.run_steps, ours.total_steps) == (3, 21, 70)
    assert ours.group(24) == (1, True) and ours.divisor(1) == 1  # a short step is a mean
    # two ranks: each sees half the rows; open-unlearning's warmup divides by the GPUs
    two = step_plan(400, TrainConfig(**ou), world=2)
    assert (two.micro_per_epoch, two.total_steps, two.warmup_steps) == (25, 60, 6)


# n = 4 forget rows, batch 1, epochs 3, warmup 1 epoch. What the loop must do, by hand:
# micro-batches per step, the gradient a loss of w[0,0] per micro-batch leaves at each step,
# the LR factor each step runs at and the one logged after it (the next step's, as HF logs).
# unlearn-sweep, accumulation 3: steps of 3+1 per epoch, 6 steps, warmup 2: (s+1)/3, then
#   linear over 4 steps; each short step is a mean, so every gradient is 1.
# open-unlearning, accumulation 3: steps at micro-batches 3, 6, 9 counted from 1 across epochs
#   (the second takes epoch 1's last and epoch 2's first two), 3 steps, warmup int(4 // 3) = 1:
#   s/1, then (3 - s)/2; the run stops after epoch 3's first micro-batch.
# open-unlearning, batch 2 (M = 2 <= 3): steps of 2, 1, 1 micro-batches (see the edge cases),
#   each micro loss / 3, warmup 0: (3 - s)/3.
LOOP_TABLE = [
    # accounting, batch, accum, micro-batches per step, gradients, LR factors run, logged,
    # epochs the callback fires for
    (
        "unlearn-sweep",
        1,
        3,
        [3, 1, 3, 1, 3, 1],
        [1, 1, 1, 1, 1, 1],
        [1 / 3, 2 / 3, 1, 0.75, 0.5, 0.25],
        [2 / 3, 1, 0.75, 0.5, 0.25, 0],
        [1, 2, 3],
    ),
    ("open-unlearning", 1, 3, [3, 3, 3], [1, 1, 1], [0, 1, 0.5], [1, 0.5, 0], [1, 2, 3]),
    (
        "open-unlearning",
        2,
        3,
        [2, 1, 1],
        [2 / 3, 1 / 3, 1 / 3],
        [1, 2 / 3, 1 / 3],
        [2 / 3, 1 / 3, 0],
        [1, 2],
    ),
]


@pytest.mark.parametrize("accounting,batch,accum,sizes,grads,run_at,logged,epochs", LOOP_TABLE)
def test_the_loop_takes_the_planned_steps(
    accounting, batch, accum, sizes, grads, run_at, logged, epochs, tiny_model, tiny_examples
):
    """A probe method (loss w[0,0] on every micro-batch, recording batch["step"]) and a probe
    optimizer (recording the gradient and LR each step runs with) show the loop's real grouping,
    loss scaling and schedule."""
    seen_steps, stepped, fired = [], [], []

    def probe_loss(batch, model, ref_model, hp):
        seen_steps.append(batch["step"])
        return model.model.embed_tokens.weight[0, 0] * 1.0, {}

    class Probe(torch.optim.SGD):
        def step(self, closure=None):
            grad = sum(
                p.grad.sum() for g in self.param_groups for p in g["params"] if p.grad is not None
            )
            stepped.append((grad.item(), self.param_groups[0]["lr"]))
            return super().step(closure)

    method = dataclasses.replace(
        get_method("grad_ascent"),
        loss=probe_loss,
        optimizer=lambda params, cfg, hp: Probe(params, lr=cfg.lr),
    )
    cfg = TrainConfig(
        lr=0.1,
        epochs=3,
        batch_size=batch,
        grad_accum=accum,
        max_grad_norm=0,
        step_accounting=accounting,
    )
    forget, retain = tiny_examples
    res = unlearn(
        tiny_model,
        method,
        method.make_hparams({}),
        cfg,
        forget,
        retain,
        0,
        on_epoch_end=lambda e, _, s: fired.append((e, s.step, s.final)),
    )
    assert [seen_steps.count(s) for s in range(len(sizes))] == sizes
    assert len(seen_steps) == sum(sizes)  # no micro-batch runs past the last step
    assert [g for g, _ in stepped] == pytest.approx(grads)
    assert [lr for _, lr in stepped] == pytest.approx([0.1 * f for f in run_at])
    assert [x["lr"] for x in res.logs] == pytest.approx([0.1 * f for f in logged])
    assert res.optimizer_steps == len(sizes) and res.epochs == epochs[-1]
    assert [e for e, _, _ in fired] == epochs and fired[-1][1] == len(sizes)
    # only the run's last epoch is final (the third row's ends at epoch 2 of 3): what the job's
    # last evaluation and a restored finished sweep trial go by
    assert [f for _, _, f in fired] == [False] * (len(epochs) - 1) + [True]


def test_open_unlearning_resume_carries_a_partial_step_and_stop_after_cuts_the_run(
    tiny_tokenizer, tiny_examples, tmp_path
):
    """Under open-unlearning's accounting (4 rows, batch 1, accumulation 3: each epoch ends with
    a step still accumulating) a run resumed from epoch 1's or 2's state, saved and loaded as a
    sweep checkpoint is, ends as the uninterrupted one; its first step ran at LR 0, so the
    weights after it are the initial ones; stop_after=2 equals the full run's epoch 2."""
    from conftest import make_tiny_model

    m = get_method("grad_diff")
    hp = m.make_hparams({})
    cfg = TrainConfig(
        lr=1e-3, epochs=3, batch_size=1, grad_accum=3, seed=5, step_accounting="open-unlearning"
    )
    forget, retain = tiny_examples
    pad = tiny_tokenizer.pad_token_id
    states = {}
    full = make_tiny_model(tiny_tokenizer)
    start = {n: p.detach().clone() for n, p in full.named_parameters()}
    res = unlearn(
        full, m, hp, cfg, forget, retain, pad, on_epoch_end=lambda e, _, s: states.setdefault(e, s)
    )
    assert res.optimizer_steps == 3 and sorted(states) == [1, 2, 3]
    assert all(torch.equal(states[1].model[n], start[n]) for n in start)  # step 1 at LR 0
    assert states[1].pending_grads and states[2].pending_grads and not states[3].pending_grads
    assert states[1].pending_parts["loss"] != 0
    for epoch in (1, 2):
        torch.save(dataclasses.asdict(states[epoch]), tmp_path / "state.pt")
        loaded = LoopState(**torch.load(tmp_path / "state.pt", weights_only=False))
        resumed = make_tiny_model(tiny_tokenizer, seed=99)
        res2 = unlearn(resumed, m, hp, cfg, forget, retain, pad, resume=loaded)
        assert res2.logs == res.logs and res2.optimizer_steps == 3
        for (n, a), (_, b) in zip(full.named_parameters(), resumed.named_parameters(), strict=True):
            assert torch.equal(a, b), (epoch, n)
    short = make_tiny_model(tiny_tokenizer)
    res3 = unlearn(short, m, hp, dataclasses.replace(cfg, stop_after=2), forget, retain, pad)
    assert res3.epochs == 2 and res3.logs == states[2].logs
    assert all(p.grad is None for p in short.parameters())  # the unfinished step is dropped
    for n, p in short.named_parameters():
        assert torch.equal(p, states[2].model[n]), n


NORMS = ("input_layernorm", "post_attention_layernorm")  # a Llama layer's RMSNorms


def test_decay_groups_spare_biases_and_norm_weights(tiny_model):
    class GemmaLikeRMSNorm(torch.nn.Module):  # a transformers-style norm: known by its name
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.ones(3))

    net = torch.nn.ModuleDict(
        {
            "proj": torch.nn.Linear(3, 3),
            "ln": torch.nn.LayerNorm(3),
            "rms": torch.nn.RMSNorm(3),
            "custom": GemmaLikeRMSNorm(),
        }
    )
    decay, spared = decay_groups(net, 0.1)
    assert decay["weight_decay"] == 0.1 and spared["weight_decay"] == 0.0
    assert [id(p) for p in decay["params"]] == [id(net["proj"].weight)]
    want = [net["proj"].bias, net["ln"].weight, net["ln"].bias, net["rms"].weight]
    assert {id(p) for p in spared["params"]} == {id(p) for p in want + [net["custom"].weight]}
    # the tiny Llama: its RMSNorms (LlamaRMSNorm) undecayed, projections and embeddings decayed
    decay, spared = decay_groups(tiny_model, 0.01)
    named = {id(p): n for n, p in tiny_model.named_parameters()}
    assert {named[id(p)] for p in spared["params"]} == {
        "model.norm.weight",
        *(f"model.layers.{i}.{k}.weight" for i in (0, 1) for k in NORMS),
    }
    assert "model.layers.0.self_attn.q_proj.weight" in {named[id(p)] for p in decay["params"]}


@pytest.mark.parametrize("method_name", ["grad_ascent", "dual_optim"])
def test_weight_decay_shrinks_an_untouched_linear_weight_but_not_a_norm(
    method_name, tiny_model, tiny_examples
):
    """A loss with zero gradient for every weight but one: AdamW (and DualOptim's optimizer)
    then only decays, so a projection shrinks by (1 - lr * wd) per step and a norm stays put."""

    def zero_grad_loss(batch, model, ref_model, hp):
        touch_all = sum(p.sum() for p in model.parameters())
        return model.model.embed_tokens.weight[0, 0] + 0.0 * touch_all, {}

    m = dataclasses.replace(get_method(method_name), loss=zero_grad_loss)
    norm = tiny_model.model.layers[0].input_layernorm.weight
    proj = tiny_model.model.layers[0].self_attn.q_proj.weight
    norm0, proj0 = norm.detach().clone(), proj.detach().clone()
    cfg = TrainConfig(
        lr=0.1,
        weight_decay=0.5,
        epochs=1,
        batch_size=2,
        grad_accum=1,
        warmup_epochs=0,
        schedule="constant",
        max_grad_norm=0,
    )
    forget, retain = tiny_examples
    res = unlearn(tiny_model, m, m.make_hparams({}), cfg, forget, retain, 0)
    assert res.optimizer_steps == 2
    assert torch.equal(norm, norm0)
    assert torch.allclose(proj, proj0 * (1 - 0.1 * 0.5) ** 2, atol=1e-7)


def updated_fraction(model: torch.nn.Module, before: dict[str, torch.Tensor]) -> float:
    """Share of the weights (elements) that differ from `before`."""
    changed = sum(int((p.float() != before[n]).sum()) for n, p in model.named_parameters())
    return changed / sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("precision", ["bf16-mixed", "bf16"])
def test_bf16_mixed_keeps_the_updates_pure_bf16_rounds_away(
    precision, tiny_examples, tiny_tokenizer
):
    """Issue 16: a bf16 model trained at lr 1e-5. AdamW moves each weight ~lr per step, far below
    half a bf16 ulp of an N(0, 0.02) weight (~6e-5), so pure bf16 drops most updates; fp32 master
    weights (bf16-mixed) keep them all."""
    from conftest import make_tiny_model

    model = make_tiny_model(tiny_tokenizer).to(torch.bfloat16)
    before = {n: p.detach().float().clone() for n, p in model.named_parameters()}
    res = run(
        model,
        tiny_examples,
        tiny_tokenizer,
        "grad_diff",
        lr=1e-5,
        epochs=3,
        batch_size=1,
        precision=precision,
    )
    assert res.optimizer_steps == 12
    assert {p.dtype for p in model.parameters()} == {
        torch.float32 if precision == "bf16-mixed" else torch.bfloat16
    }
    fraction = updated_fraction(model, before)
    if precision == "bf16-mixed":
        assert fraction > 0.99
    else:
        assert fraction < 0.3  # 0.15 measured: most updates are lost
    assert all(math.isfinite(log["loss"]) for log in res.logs)


def test_adamw_is_foreach_on_cpu_and_steps_as_the_per_parameter_loop(tiny_tokenizer):
    """Issue 16: AdamW runs as multi-tensor ops (foreach on CPU; fused on CUDA), an
    implementation choice only: its update equals the per-parameter loop's up to rounding."""
    from conftest import make_tiny_model

    from unlearn_core.train import _optimizer

    models = [make_tiny_model(tiny_tokenizer) for _ in range(2)]
    cfg = TrainConfig(lr=1e-2)
    fast = _optimizer(get_method("grad_ascent"), None, cfg, models[0])
    assert fast.defaults["foreach"] is True and not fast.defaults["fused"]
    groups = decay_groups(models[1], cfg.weight_decay)
    loop = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=False)
    ids = torch.tensor([[1, 2, 3, 4]])
    for _ in range(3):
        for model, opt in zip(models, (fast, loop), strict=True):
            model(input_ids=ids, labels=ids).loss.backward()
            opt.step()
            opt.zero_grad()
    for a, b in zip(models[0].parameters(), models[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_cuda_forwards_choose_the_sdpa_backends_and_cpu_ones_leave_them():
    """Issue 16: on CUDA the loop's forward passes run with flash/memory-efficient/math sdpa only
    (cuDNN's plans every new padded length); the flags are restored after; on CPU nothing."""
    from unlearn_core.train import _compute

    before = torch.backends.cuda.cudnn_sdp_enabled()
    with _compute("fp32", torch.device("cpu")):
        assert torch.backends.cuda.cudnn_sdp_enabled() == before
    with _compute("fp32", torch.device("cuda")):
        assert not torch.backends.cuda.cudnn_sdp_enabled()
        assert torch.backends.cuda.flash_sdp_enabled()
    assert torch.backends.cuda.cudnn_sdp_enabled() == before
    with _compute("bf16-mixed", torch.device("cpu")):
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
