"""benchmarks/bench_peer.py and bench_precision.py at the tiny size, in process: both sides of the
peer comparison run the asked number of optimizer steps on the same rows and count real tokens;
bench_precision's measurement reports a full update in bf16-mixed and a partial one in bf16."""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
bench_peer = pytest.importorskip("bench_peer")
bench_precision = pytest.importorskip("bench_precision")


def args(**kw) -> argparse.Namespace:
    base = dict(device="cpu", size="tiny", steps=2, batch_size=2, grad_accum=1, precision="fp32")
    base |= dict(n_forget=4, prompt_len=4, answer_len=6, threads=0)
    return argparse.Namespace(**(base | kw))


def test_both_sides_run_the_same_trial():
    from bench_gpu import SIZES, TrialSpec, build_model, synthetic_rows

    from unlearn_core.models import frozen_reference

    a = args()
    spec = TrialSpec("tiny", 0, 1, 4, 4, a.prompt_len, a.answer_len)
    model, _, _ = build_model(spec, torch.device("cpu"))
    ref = frozen_reference(model)
    forget = synthetic_rows(4, "forget", spec, SIZES["tiny"]["vocab_size"], seed=1)
    retain = synthetic_rows(4, "retain", spec, SIZES["tiny"]["vocab_size"], seed=2)
    forget_tokens = sum(len(r["forget"]["input_ids"]) for r in forget)
    for side in (bench_peer.ours, bench_peer.theirs):  # each asserts its optimizer steps
        wall, tokens = side(copy.deepcopy(model), ref, forget, retain, a)
        assert wall > 0 and tokens > forget_tokens  # forget and retain tokens, no padding


def test_bench_precision_measures_the_lost_updates():
    bf16 = bench_precision.measure("bf16", args(n_forget=8))
    mixed = bench_precision.measure("bf16-mixed", args(n_forget=8))
    assert mixed["updated"] > 0.99 > 0.5 > bf16["updated"] > 0
    assert mixed["weights"] == "torch.float32" and bf16["weights"] == "torch.bfloat16"
    assert mixed["steps"] == bf16["steps"] == 4  # peak memory: per process, not asserted here
