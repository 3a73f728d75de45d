"""The unlearning loop: step counting, seeded per-rank pairing, LR schedule, TrialDiverged on a
non-finite loss, parameters changing, bit-for-bit determinism on CPU for a fixed seed, resuming
from an epoch's state, stopping early on the full schedule (stop_after), and JobConfig <-> dict."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from unlearn_core.errors import TrialDiverged, UserError
from unlearn_core.methods import get_method
from unlearn_core.train import TrainConfig, epoch_batches, lr_lambda, steps_per_epoch, unlearn


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
        == 3 * steps_per_epoch(4, TrainConfig(batch_size=1, grad_accum=2), 1)
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
    assert res.epochs == 2 and res.optimizer_steps == 2 * steps_per_epoch(4, cfg, 1) == 4
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
