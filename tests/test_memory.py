"""Memory that fits (issue 15): epoch snapshots in host memory, the LoRA reference as the same
model with its adapters off, gradient checkpointing, the eval batch of sweeps, and per-token
log-probs computed in chunks of positions (equal to the one-shot maths, values and gradients)."""

from __future__ import annotations

import pytest
import torch

from unlearn_core.methods import get_method
from unlearn_core.train import LoopState, TrainConfig, unlearn


def _tensors(tree) -> list[torch.Tensor]:
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for v in tree.values() for t in _tensors(v)]
    if isinstance(tree, list | tuple):
        return [t for v in tree for t in _tensors(v)]
    return []


def test_epoch_snapshots_live_in_host_memory_and_share_no_storage(tiny_tokenizer, tiny_examples):
    """Every tensor of an epoch's LoopState (weights, AdamW moments, a pending step's gradients)
    is a CPU copy: none shares storage with the live parameters, gradients or optimizer state,
    and training on leaves the snapshot as it was."""
    from conftest import make_tiny_model

    m = get_method("grad_diff")
    hp = m.make_hparams({})
    cfg = TrainConfig(
        lr=1e-3, epochs=2, batch_size=1, grad_accum=3, seed=5, step_accounting="open-unlearning"
    )
    forget, retain = tiny_examples
    model = make_tiny_model(tiny_tokenizer)
    seen: dict[int, tuple[LoopState, dict, set[int]]] = {}

    def keep(epoch: int, live: torch.nn.Module, state: LoopState) -> None:
        ptrs = {p.data_ptr() for p in live.parameters()}
        ptrs |= {p.grad.data_ptr() for p in live.parameters() if p.grad is not None}
        values = {k: v.clone() for k, v in state.model.items()}
        seen[epoch] = (state, values, ptrs)

    unlearn(model, m, hp, cfg, forget, retain, tiny_tokenizer.pad_token_id, on_epoch_end=keep)
    state, values, ptrs = seen[1]
    assert state.pending_grads  # open-unlearning's accounting: a step still accumulating
    held = _tensors([state.model, state.optimizer, state.pending_grads])
    assert held and all(t.device.type == "cpu" for t in held)
    assert not {t.data_ptr() for t in held} & ptrs
    assert all(torch.equal(state.model[k], v) for k, v in values.items())  # training went on


def test_sweeps_pass_their_eval_batch_size_to_every_trial():
    from sweeps.config import SweepConfig, make_job
    from unlearn_core.evaluate import EvalConfig
    from unlearn_core.source import Source

    point = {"lr": 1e-5, "epochs": 2, "warmup_epochs": 1.0, "weight_decay": 0.01, "beta": 0.1}
    source = Source("tiny-tofu-small")
    assert make_job(SweepConfig("npo", source), point, 0).eval == EvalConfig()
    job = make_job(SweepConfig("npo", source, eval_batch_size=3), point, 0)
    assert job.eval == EvalConfig(batch_size=3)


@pytest.mark.parametrize("value", ["0", "-4", "2.5"])
def test_a_bad_eval_batch_size_is_one_line_exit_2(value, tmp_path, monkeypatch, capsys):
    from unlearn_sweep.cli import main

    monkeypatch.chdir(tmp_path)
    args = ["sweep", "--method", "npo", "--benchmark", "tiny-tofu-small", "--trials", "2"]
    code = main([*args, "--eval-batch-size", value])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "eval" in err[0] and "batch" in err[0], err
    assert not list(tmp_path.iterdir())  # refused before any experiment folder exists


def _lora(model: torch.nn.Module) -> torch.nn.Module:
    from unlearn_core.models import ModelConfig, add_lora

    return add_lora(model, ModelConfig("in-process", lora_r=4))


def test_the_lora_reference_is_the_pre_training_model_with_its_adapters_off(
    tiny_tokenizer, tiny_examples
):
    """After NPO has moved the adapters, the reference's logits still equal the model's logits
    before training, exactly; the model's own have moved; the reference holds no tensor of its
    own and leaves every module in the mode it found it."""
    from conftest import make_tiny_model

    from unlearn_core.logprobs import forward, reference_logits
    from unlearn_core.models import AdapterOff, frozen_reference

    forget, retain = tiny_examples
    inputs = {k: v[None] if v.dim() == 1 else v for k, v in _collated(forget).items()}
    model = _lora(make_tiny_model(tiny_tokenizer))
    model.eval()
    with torch.no_grad():
        start = forward(model, inputs)
    model.train()
    ref = frozen_reference(model, lora=True)
    assert isinstance(ref, AdapterOff) and ref.model is model
    m = get_method("npo")
    cfg = TrainConfig(lr=1e-2, epochs=2, batch_size=2, grad_accum=1, warmup_epochs=0)
    unlearn(model, m, m.make_hparams({}), cfg, forget, retain, 0, ref_model=ref)
    model.train()
    logits = reference_logits(ref, inputs)
    assert torch.equal(logits, start) and not logits.requires_grad
    assert all(mod.training for mod in model.modules())  # put back as it was
    with torch.no_grad():
        assert not torch.allclose(forward(model.eval(), inputs), start)  # training happened


def _collated(rows: list[dict]) -> dict[str, torch.Tensor]:
    from unlearn_core.data.format import collate

    return collate([r["forget"] for r in rows], 0)


def test_a_lora_npo_job_holds_no_second_copy_of_the_base_weights(small_benchmark, monkeypatch):
    """run_job's reference for a LoRA job is the trained model itself: while unlearn runs, the
    only parameters that came to exist are the job's model's (a deep copy would double them)."""
    import gc

    from unlearn_core import job as job_module
    from unlearn_core.evaluate import EvalConfig
    from unlearn_core.job import JobConfig, run_job
    from unlearn_core.models import AdapterOff
    from unlearn_core.source import Source

    def storages() -> set[int]:
        gc.collect()
        return {
            o.untyped_storage().data_ptr()
            for o in gc.get_objects()
            if type(o) is torch.nn.Parameter
        }

    seen = {}
    real = job_module.unlearn

    def spy(model, method, hp, cfg, *args, ref_model=None, **kw):
        seen["new"] = storages() - seen["old"]
        seen["model"] = {p.untyped_storage().data_ptr() for p in model.parameters()}
        seen["ref"] = ref_model
        return real(model, method, hp, cfg, *args, ref_model=ref_model, **kw)

    monkeypatch.setattr(job_module, "unlearn", spy)
    train = TrainConfig(epochs=1, batch_size=8, grad_accum=1)
    job = JobConfig(
        "npo",
        source=Source("tiny-tofu-small", lora_r=4),
        train=train,
        eval=EvalConfig(generate=False),
    )
    seen["old"] = storages()
    run_job(job, eval_before=False, device=torch.device("cpu"))
    assert seen["new"] == seen["model"]
    assert isinstance(seen["ref"], AdapterOff)


# every method that reads a reference under LoRA (RMU, GRUN and task vectors refuse LoRA; AltPO's
# reference is DPO's log-ratio, as IdkDPO's)
REFERENCE_USERS = [
    ("npo", {}),
    ("idk_dpo", {}),
    ("undial", {}),
    ("palu", {}),
    ("grad_diff", {"retain_loss": "kl"}),
    ("dual_optim", {"base": "npo"}),
]


@pytest.mark.parametrize("name,hparams", REFERENCE_USERS, ids=[c[0] for c in REFERENCE_USERS])
def test_each_method_gets_the_same_loss_from_the_adapters_off_as_from_a_frozen_copy(
    name, hparams, small_benchmark
):
    """With adapters that have moved away from zero, the method's loss and logged values with the
    AdapterOff reference equal those with a deep copy of the model taken before they moved."""
    import json

    from unlearn_core.data.format import PromptFormat
    from unlearn_core.data.views import build_views
    from unlearn_core.models import ModelConfig, frozen_reference, load_model, load_tokenizer
    from unlearn_core.train import make_batch

    path = str(small_benchmark["target"])
    tok = load_tokenizer(path)
    rows = json.loads((small_benchmark["data"] / "forget10.json").read_text())[:2]
    retain = json.loads((small_benchmark["data"] / "retain90.json").read_text())[:2]
    m = get_method(name)
    hp = m.make_hparams(hparams)
    assert m.needs_reference(hp) and not m.no_lora
    forget, retain = build_views(tok, PromptFormat(), rows, retain, m.views, seed=0)
    batch = make_batch(forget, retain, [0, 1], [0, 1], tok.pad_token_id, torch.device("cpu"), 0)
    model = load_model(ModelConfig(path, lora_r=4), torch.device("cpu"))
    copied = frozen_reference(model)  # before the adapters move
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
    loss_copy, logs_copy = m.loss(batch, model, copied, hp)
    loss_off, logs_off = m.loss(batch, model, frozen_reference(model, lora=True), hp)
    assert torch.allclose(loss_off, loss_copy, atol=1e-6, rtol=0), (loss_off, loss_copy)
    for k, v in logs_copy.items():
        assert torch.allclose(torch.as_tensor(logs_off[k]), torch.as_tensor(v), atol=1e-6), k
    loss_off.backward()  # the graph goes through the adapters, not through the reference
    assert all(p.grad is None for n, p in model.named_parameters() if "lora_" not in n)


def _step(model: torch.nn.Module, ref, batch: dict) -> torch.Tensor:
    """One NPO micro-batch's loss and its backward, in train mode."""
    m = get_method("npo")
    model.train()
    loss, _ = m.loss(batch, model, ref, m.make_hparams({}))
    loss.backward()
    return loss.detach()


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_gradient_checkpointing_recomputes_and_gives_the_same_loss_and_gradients(
    lora, tiny_tokenizer, tiny_examples
):
    """One NPO micro-batch with checkpointing on: each decoder layer runs its forward twice (the
    recompute happened) and the loss and every gradient equal those without, to 1e-6."""
    from conftest import make_tiny_model

    from unlearn_core.models import frozen_reference
    from unlearn_core.train import _checkpointing, make_batch

    forget, retain = tiny_examples
    batch = make_batch(forget, retain, [0, 1], [0, 1], 0, torch.device("cpu"), 0)
    runs = []
    for checkpointed in (False, True):
        model = make_tiny_model(tiny_tokenizer)
        model = _lora(model) if lora else model
        ref = frozen_reference(model, lora)
        if checkpointed:
            _checkpointing(model)
        calls: list[int] = []
        # inside the layer (Hugging Face checkpoints its forward, leaving its own hooks out), before
        # the module runs (the recompute stops once the last saved tensor is back)
        mlp = model.get_submodule(("base_model.model." if lora else "") + "model.layers.0.mlp")
        hook = mlp.register_forward_pre_hook(lambda *_, c=calls: c.append(1))
        loss = _step(model, ref, batch)
        hook.remove()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        runs.append((loss, grads, len(calls)))
    (loss0, grads0, calls0), (loss1, grads1, calls1) = runs
    assert calls1 > calls0  # recomputed in the backward pass
    assert torch.allclose(loss1, loss0, atol=1e-6, rtol=0)
    assert grads0 and grads1.keys() == grads0.keys()
    assert all("lora_" in n for n in grads0) == lora
    for n, g in grads0.items():
        assert torch.allclose(grads1[n], g, atol=1e-6, rtol=0), n


def test_a_checkpointed_run_ends_as_one_without(tiny_tokenizer, tiny_examples):
    from conftest import make_tiny_model

    forget, retain = tiny_examples
    m = get_method("grad_diff")
    hp = m.make_hparams({})
    models, logs = [], []
    for on in (False, True):
        cfg = TrainConfig(lr=1e-3, epochs=1, batch_size=2, grad_accum=1, gradient_checkpointing=on)
        model = make_tiny_model(tiny_tokenizer)
        logs.append(unlearn(model, m, hp, cfg, forget, retain, 0).logs)
        models.append(model)
    assert len(logs[1]) == len(logs[0]) == 2
    for a, b in zip(logs[0], logs[1], strict=True):
        assert a.keys() == b.keys() and all(abs(a[k] - b[k]) <= 1e-6 for k in a)
    pairs = zip(models[0].named_parameters(), models[1].named_parameters(), strict=True)
    for (n, a), (_, b) in pairs:
        assert torch.allclose(a, b, atol=1e-6, rtol=0), n


def test_gradient_checkpointing_on_a_model_without_it_is_one_user_error(tiny_examples):
    from unlearn_core.errors import UserError

    class Plain(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Linear(2, 2)

    forget, retain = tiny_examples
    cfg = TrainConfig(epochs=1, batch_size=2, grad_accum=1, gradient_checkpointing=True)
    with pytest.raises(UserError) as e:
        unlearn(Plain(), get_method("grad_ascent"), None, cfg, forget, retain, 0)
    assert "\n" not in str(e.value) and "gradient_checkpointing" in str(e.value)
    assert "Plain does not support it" in str(e.value)


def test_gradient_checkpointing_is_a_checked_train_field():
    from unlearn_core.config import from_plain
    from unlearn_core.errors import UserError

    assert TrainConfig().gradient_checkpointing is False
    assert from_plain(TrainConfig, {"gradient_checkpointing": True}, "train").gradient_checkpointing
    with pytest.raises(UserError, match="gradient_checkpointing must be bool"):
        from_plain(TrainConfig, {"gradient_checkpointing": "yes"}, "train")


def _one_shot_logprobs(logits, labels):
    """token_logprobs as it was: one fp32 (B, T-1, V) log-softmax."""
    from unlearn_core.logprobs import shift

    logits, targets, mask = shift(logits, labels)
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return logp * mask


def _one_shot_kl(logits, ref_logits, labels):
    from unlearn_core.logprobs import shift

    logits, _, mask = shift(logits, labels)
    logp = torch.log_softmax(logits.float(), dim=-1)
    ref_logp = torch.log_softmax(ref_logits[:, :-1, :].float(), dim=-1)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    return (kl * mask).sum() / mask.sum().clamp(min=1)


# (B, T, V) and chunk sizes in elements: one position per chunk, a chunk boundary falling inside
# the sequence, the whole sequence in one chunk, a chunk smaller than one position's vocabulary
SHAPES = [(2, 9, 50, 100), (3, 17, 40, 5 * 3 * 40), (1, 5, 300, 2**22), (2, 6, 64, 10)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("shape", SHAPES, ids=[f"{b}x{t}x{v}/{c}" for b, t, v, c in SHAPES])
def test_chunked_logprobs_and_kl_equal_the_one_shot_maths(shape, dtype, monkeypatch):
    """token_logprobs and answer_kl in chunks of positions give the one-shot values and gradients
    to 1e-6 (bf16 gradients: the same fp32 numbers rounded to bf16), masked positions included."""
    from unlearn_core import logprobs

    b, t, v, chunk = shape
    monkeypatch.setattr(logprobs, "CHUNK_ELEMENTS", chunk)
    gen = torch.Generator().manual_seed(t * v)
    x = (3 * torch.randn(b, t, v, generator=gen)).to(dtype)
    ref = (3 * torch.randn(b, t, v, generator=gen)).to(dtype)
    labels = torch.randint(v, (b, t), generator=gen)
    labels[0, : t // 2] = -100  # a prompt
    labels[-1, -2:] = -100  # padding
    weights = torch.randn(b, t - 1, generator=gen)
    for ours, theirs in [
        (lambda z: logprobs.token_logprobs(z, labels)[0], lambda z: _one_shot_logprobs(z, labels)),
        (lambda z: logprobs.answer_kl(z, ref, labels), lambda z: _one_shot_kl(z, ref, labels)),
    ]:
        a, c = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        got, want = ours(a), theirs(c)
        assert got.dtype == want.dtype == torch.float32
        assert torch.allclose(got, want, atol=1e-6, rtol=1e-6), (got - want).abs().max()
        (got * weights).sum().backward() if got.dim() else got.backward()
        (want * weights).sum().backward() if want.dim() else want.backward()
        assert a.grad.dtype == dtype
        tol = 1e-6 if dtype == torch.float32 else 2**-8  # one bf16 rounding apart at most
        assert torch.allclose(a.grad.float(), c.grad.float(), atol=1e-6, rtol=tol)


def test_chunked_logprobs_keep_no_fp32_copy_of_the_logits_for_backward(monkeypatch):
    """What autograd keeps for the backward of token_logprobs on bf16 logits is the logits
    themselves and (B, T) tensors: no fp32 (B, T, V) tensor (the one-shot expression kept one)."""
    from unlearn_core import logprobs

    monkeypatch.setattr(logprobs, "CHUNK_ELEMENTS", 64)
    b, t, v = 2, 8, 32
    x = torch.randn(b, t, v).bfloat16().requires_grad_(True)
    labels = torch.randint(v, (b, t))
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda s: saved.append(s) or s, lambda s: s):
        logprobs.sequence_nll(x, labels).sum()
    big = [s for s in saved if s.dtype == torch.float32 and s.numel() >= b * (t - 1) * v]
    assert not big and saved


def test_evaluation_token_statistics_in_chunks_equal_the_one_shot_ones(
    tiny_model, tiny_examples, monkeypatch
):
    """score_encoded's per-token log-probs, Min-K%++ moments and argmax with one position per
    chunk equal those with the whole batch in one chunk (the one-shot computation)."""
    import numpy as np

    from unlearn_core import logprobs
    from unlearn_core.evaluate import EvalConfig, score_encoded

    forget, retain = tiny_examples
    enc = [r["forget"] for r in forget] + [r["retain"] for r in retain]
    tiny_model.eval()
    runs = []
    for chunk in (2**40, 1):
        monkeypatch.setattr(logprobs, "CHUNK_ELEMENTS", chunk)
        runs.append(score_encoded(tiny_model, enc, 0, EvalConfig(batch_size=3)))
    one, chunked = runs
    assert np.allclose(one.avg_loss, chunked.avg_loss, atol=1e-6, rtol=0)
    for name in ("token_logprobs", "token_mu", "token_sigma", "pred_ids", "label_ids"):
        for a, b in zip(getattr(one, name), getattr(chunked, name), strict=True):
            assert a.shape == b.shape and np.allclose(a, b, atol=1e-6, rtol=0), name
