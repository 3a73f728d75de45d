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
