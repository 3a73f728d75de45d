"""Fewer, bigger kernels (issue 16, item 2), on CPU: length-bucketed micro-batches (padding falls,
every forget row once per epoch, disjoint rank shards, seeded), the micro-batch probe (halving,
OOM, no trace left), which losses give the same weights at equal effective batch and to what
tolerance, torch.compile'd training against eager, and bad settings refused."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
import torch

from unlearn_core.config import from_plain
from unlearn_core.errors import UserError
from unlearn_core.logprobs import IGNORE
from unlearn_core.methods import get_method
from unlearn_core.train import (
    TrainConfig,
    epoch_batches,
    fit_micro_batch,
    make_batch,
    resolve_bucket,
    row_lengths,
    unlearn,
)

CPU = torch.device("cpu")


def rows(n: int, view: str, seed: int, vocab: int, long: int = 120, same: bool = False) -> list:
    """n encoded rows of one view: random prompt (2-6 tokens) and answer (2..long tokens, or all
    the same length with `same`), labels -100 on the prompt."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        p = int(torch.randint(2, 7, (1,), generator=g))
        a = long if same else int(torch.randint(2, long + 1, (1,), generator=g))
        ids = torch.randint(4, vocab, (p + a,), generator=g).tolist()
        out.append({view: {"input_ids": ids, "labels": [IGNORE] * p + ids[p:]}})
    return out


def padded_tokens(forget, retain, micro, multiple: int) -> tuple[int, set[int]]:
    """Pad tokens over an epoch's micro-batches and the distinct padded lengths seen."""
    pad, widths = 0, set()
    for f, r in micro:
        for view in make_batch(forget, retain, f, r, 0, CPU, 0, multiple).values():
            if isinstance(view, dict):
                pad += int((view["attention_mask"] == 0).sum())
                widths.add(view["input_ids"].shape[1])
    return pad, widths


def gens(seed: int, rank: int) -> tuple[torch.Generator, torch.Generator]:
    return torch.Generator().manual_seed(seed), torch.Generator().manual_seed(100 + rank)


@pytest.mark.parametrize("world", [1, 2])
def test_bucketing_cuts_padding_and_sees_every_row_once(world):
    forget, retain = rows(200, "forget", 1, 300), rows(50, "retain", 2, 300)
    cfg, lengths = TrainConfig(batch_size=4), (row_lengths(forget), row_lengths(retain))
    plain, bucketed, seen = {}, {}, []
    for rank in range(world):
        plain[rank] = epoch_batches(200, 50, cfg, *gens(0, rank), rank, world)
        bucketed[rank] = epoch_batches(200, 50, cfg, *gens(0, rank), rank, world, *lengths)
        again = epoch_batches(200, 50, cfg, *gens(0, rank), rank, world, *lengths)
        assert again == bucketed[rank]  # deterministic from the seed
        assert len(bucketed[rank]) == len(plain[rank])  # StepPlan's micro-batch count holds
        shard = sorted(i for f, _ in plain[rank] for i in f)
        assert sorted(i for f, _ in bucketed[rank] for i in f) == shard  # each row once
        # retain partners: the same draws from this rank's stream, regrouped by length
        assert [len(r) for _, r in bucketed[rank]] == [len(r) for _, r in plain[rank]]
        assert sorted(i for _, r in bucketed[rank] for i in r) == sorted(
            i for _, r in plain[rank] for i in r
        )
        seen += shard
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 200  # disjoint shards, all rows
    for rank in range(world):
        before, shapes_before = padded_tokens(forget, retain, plain[rank], 1)
        after, _ = padded_tokens(forget, retain, bucketed[rank], 1)
        assert after < before / 3, (after, before)  # far less padding
        rounded, shapes = padded_tokens(forget, retain, bucketed[rank], 64)
        assert shapes <= {64, 128} and len(shapes_before) > 10  # a handful of shapes, not dozens
        assert rounded < before, (rounded, before)  # all views, rounded up to 64: fewer still


def test_bucketing_auto_is_cuda_only_and_off_keeps_the_order():
    assert TrainConfig().bucket == "auto" and TrainConfig().micro_batch == "fixed"
    assert not resolve_bucket("auto", CPU) and resolve_bucket("auto", torch.device("cuda"))
    assert resolve_bucket("on", CPU) and not resolve_bucket("off", torch.device("cuda"))


def test_fit_micro_batch_halves_to_the_largest_that_fits():
    tried = []

    def fits(b):
        tried.append(b)
        return b <= 8

    cfg = fit_micro_batch(TrainConfig(batch_size=4, grad_accum=8), fits)
    assert (cfg.batch_size, cfg.grad_accum, tried) == (8, 4, [32, 16, 8])
    cfg = fit_micro_batch(TrainConfig(batch_size=3, grad_accum=8), lambda b: True)
    assert (cfg.batch_size, cfg.grad_accum) == (8, 3)  # 24: the largest power of two dividing it
    cfg = fit_micro_batch(TrainConfig(batch_size=4, grad_accum=1), lambda b: False)
    assert (cfg.batch_size, cfg.grad_accum) == (1, 4)


def train(method: str, forget, retain, hp: dict | None = None, steps: int = 3, **cfg) -> tuple:
    """Weights (flat) and logs after `steps` optimizer steps of 32 rows on a tiny Llama."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from unlearn_core.models import frozen_reference

    torch.manual_seed(0)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=300,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=256,
            tie_word_embeddings=True,
            pad_token_id=0,
        )
    )
    m = get_method(method)
    h = m.make_hparams(hp or {})
    ref = frozen_reference(model) if m.needs_reference(h) else None
    kw = {"lr": 1e-3, "epochs": steps, "warmup_epochs": 0, "schedule": "constant"} | cfg
    res = unlearn(model, m, h, TrainConfig(**kw), forget[:32], retain, 0, ref_model=ref)
    return torch.cat([p.detach().flatten() for p in model.parameters()]), res.logs


SPLITS = [(8, 4), (32, 1), (4, 8)]
# fp32, 3 AdamW steps at lr 1e-3 from one init, relative max |w_a - w_b| / max |w_b|: where the
# loss is split-invariant the splits differ only in summation order, which AdamW's g / sqrt(v)
# amplifies on near-zero gradients; measured 1.1e-6 (npo, no retain term, varied lengths), 6.9e-6
# (npo+GD, equal lengths), 5.6e-7 (grad_diff, equal lengths); token means over varied lengths
# differ by 4.0e-3 to 5.4e-3 (200x the tolerance)
TOL = 2e-5


def rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.mark.parametrize(
    "method,hp,same",
    [
        ("npo", {"retain_loss": "none"}, False),  # per-sequence mean: split-invariant
        ("npo", {}, True),  # + retain NLL, a token mean: invariant when lengths are equal
        ("grad_diff", {}, True),  # token means of forget and retain NLL: likewise
    ],
)
def test_equal_effective_batch_gives_the_same_weights(method, hp, same):
    forget, retain = rows(32, "forget", 3, 300, 24, same), rows(64, "retain", 4, 300, 24, same)
    runs = [train(method, forget, retain, hp, batch_size=b, grad_accum=a) for b, a in SPLITS]
    for weights, logs in runs[1:]:
        assert rel_diff(weights, runs[0][0]) < TOL
        assert len(logs) == len(runs[0][1]) == 3


@pytest.mark.parametrize("method", ["grad_diff", "npo"])
def test_token_means_depend_on_the_split_when_lengths_differ(method):
    """A token-mean term (mean_nll: grad_diff's forget and retain NLL, npo's retain NLL) is a mean
    per micro-batch, and the step averages micro-batches: 8 x 4 weights each micro-batch's tokens
    by 1 / (4 * its token count), 32 x 1 every token by 1 / (all tokens). That is open-unlearning's
    accounting (HF Trainer of transformers 4.45.1, before num_items_in_batch), kept here; so
    micro_batch=auto is exact only for per-sequence losses or equal lengths (above)."""
    forget, retain = rows(32, "forget", 3, 300, 24), rows(64, "retain", 4, 300, 24)
    a, _ = train(method, forget, retain, batch_size=8, grad_accum=4)
    b, _ = train(method, forget, retain, batch_size=32, grad_accum=1)
    assert rel_diff(a, b) > 100 * TOL


def test_micro_batch_auto_keeps_the_configured_split_on_cpu():
    forget, retain = rows(32, "forget", 3, 300, 24), rows(64, "retain", 4, 300, 24)
    fixed = train("grad_diff", forget, retain, steps=1, batch_size=8, grad_accum=4)
    auto = train(
        "grad_diff", forget, retain, steps=1, batch_size=8, grad_accum=4, micro_batch="auto"
    )
    assert torch.equal(fixed[0], auto[0]) and fixed[1] == auto[1]


def test_bucketing_on_trains_on_cpu_with_the_same_step_count():
    forget, retain = rows(32, "forget", 3, 300, 40), rows(64, "retain", 4, 300, 40)
    plain = train("npo", forget, retain, steps=2, batch_size=4, grad_accum=4)
    on = train("npo", forget, retain, steps=2, batch_size=4, grad_accum=4, bucket="on")
    assert len(on[1]) == len(plain[1]) == 4
    assert not torch.equal(on[0], plain[0])  # another grouping of the same rows


@pytest.mark.slow  # inductor compiles the forward and backward on CPU: ~1-2 min on 2 cores
def test_compiled_training_matches_eager():
    forget, retain = rows(8, "forget", 3, 300, 12, True), rows(8, "retain", 4, 300, 12, True)
    kw = {"steps": 2, "batch_size": 4, "grad_accum": 2}
    eager = train("grad_diff", forget, retain, **kw)
    compiled = train("grad_diff", forget, retain, compile=True, **kw)
    for e, c in zip(eager[1], compiled[1], strict=True):
        assert abs(e["loss"] - c["loss"]) <= 1e-5 * max(1.0, abs(e["loss"]))
    assert rel_diff(compiled[0], eager[0]) < TOL


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"bucket": "yes"}, "unknown bucket 'yes'; accepted: off, on, auto"),
        ({"pad_multiple": 0}, "pad_multiple must be in 1..4096, got 0"),
        ({"pad_multiple": 8192}, "pad_multiple must be in 1..4096, got 8192"),
        ({"micro_batch": "max"}, "unknown micro_batch 'max'; accepted: fixed, auto"),
        ({"compile": "yes"}, "train: compile must be bool, got 'yes'"),
        ({"compile": 1}, "train: compile must be bool, got 1"),
    ],
)
def test_bad_settings_are_one_line(fields, message):
    with pytest.raises(UserError) as err:
        TrainConfig(**fields)
    assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(UserError):
        from_plain(TrainConfig, fields, "train")


def test_bad_compile_in_a_config_file_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    from unlearn_sweep.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "best.yaml").write_text("job:\n  method: npo\n  train:\n    compile: maybe\n")
    code = main(["unlearn", "--config", "best.yaml"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "compile must be bool, got 'maybe'" in err[0], err


def test_fields_round_trip():
    cfg = TrainConfig(bucket="on", pad_multiple=32, micro_batch="auto", compile=True)
    assert from_plain(TrainConfig, dataclasses.asdict(cfg), "train") == cfg


def test_the_probe_runs_a_step_and_leaves_no_trace(tiny_model, tiny_examples, tiny_tokenizer):
    """_fits on CPU: a forward+backward that fits returns True, an OutOfMemoryError False; either
    way no gradient is left and the method's buffers (PDU's dual variable) are as before."""
    from accelerate import Accelerator

    from unlearn_core.train import _fits

    forget, retain = tiny_examples
    m = get_method("pdu")
    hp = m.make_hparams({"dual_warmup_steps": 0, "dual_step_size": 1.0})
    model = m.prepare(tiny_model, hp)
    lam = model.pdu_dual.lam.clone()
    acc, pad = Accelerator(cpu=True), tiny_tokenizer.pad_token_id
    args = (acc, model, m, hp, None, forget, retain, pad, contextlib.nullcontext)
    assert _fits(*args, 8)  # 8 > 4 forget rows: they repeat
    assert torch.equal(model.pdu_dual.lam, lam)
    assert all(p.grad is None for p in model.parameters())

    def oom(*_):
        raise torch.OutOfMemoryError("probe")

    assert not _fits(acc, model, dataclasses.replace(m, loss=oom), *args[3:], 8)


def test_liger_is_refused_in_one_line_where_it_cannot_run(tmp_path):
    """liger's kernels are Triton's: on a CPU (and without the package) `unlearn --liger` stops
    before any model loads, one line, exit 2, nothing written; off, nothing is checked."""
    import subprocess
    import sys

    from unlearn_core.kernels import check_liger

    check_liger(False, CPU)  # off: no check, whatever the device
    with pytest.raises(UserError, match="CUDA GPUs only, this job runs on cpu"):
        check_liger(True, CPU)
    out = subprocess.run(
        [sys.executable, "-m", "unlearn_sweep", "unlearn", "--method", "npo", "--liger"]
        + ["--epochs", "1", "--output", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert "liger runs Triton kernels on CUDA GPUs only" in lines[0]
    assert list(tmp_path.iterdir()) == []
