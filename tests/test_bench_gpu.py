"""benchmarks/bench_gpu.py at its tiny CPU size, run as a user runs it: every figure it reports
for full fine-tuning, LoRA, evaluation and packing 1 and 2 trials is finite and positive, the JSON
agrees with the printed table, and a bad --packs is a one-line user error (exit 2)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from unlearn_core.errors import UserError

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "bench_gpu.py"


def run_bench(*args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
    )


def positive(x: object) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


@pytest.mark.slow  # the benchmark script end to end (make test-slow)
def test_tiny_bench_reports_positive_figures(tmp_path):
    out = tmp_path / "bench.json"
    proc = run_bench(
        "--size",
        "tiny",
        "--epochs",
        "1",
        "--n-forget",
        "32",
        "--n-retain",
        "32",
        "--eval-batch",
        "32",
        "--packs",
        "1,2",
        "--json",
        str(out),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = json.loads(out.read_text())
    assert r["device"] == "cpu" and r["peak_spec_tflops"] is None
    for mode in ("full", "lora"):
        m = r["modes"][mode]
        assert m["mode"] == mode and m["epochs"] == 1 and m["optimizer_steps"] == 1
        for key in (
            "trial_s",
            "train_tokens",
            "ref_tokens",
            "train_tokens_per_s",
            "flops",
            "mfu_measured",
        ):
            assert positive(m[key]), (mode, key, m[key])
        # both halves of each NPO batch were counted: forget rows and their retain partners
        assert m["train_tokens"] > m["ref_tokens"]
    assert positive(r["eval"]["tokens_per_s"]) and r["eval"]["sequences"] == 64
    assert [p["k"] for p in r["packing"]] == [1, 2]
    for p in r["packing"]:
        assert len(p["trials"]) == p["k"]
        for key in (
            "wall_s",
            "trials_per_hour",
            "speedup",
            "agg_train_tokens_per_s",
            "agg_mfu_measured",
        ):
            assert positive(p[key]), (p["k"], key, p[key])
    assert r["packing"][0]["speedup"] == 1.0
    table = proc.stdout
    assert "full " in table and "lora " in table and "packing LoRA trials (process)" in table
    assert table.count("target ") == 2 and f"{r['packing'][1]['trials_per_hour']:.1f}" in table


def test_packs_without_one_is_a_user_error():
    proc = run_bench("--size", "tiny", "--packs", "2,4")
    assert proc.returncode == 2
    assert "--packs must include 1" in proc.stderr and "Traceback" not in proc.stderr


def test_train_settings_reach_every_trial_or_are_refused_in_one_line():
    """--train KEY=VALUE gives each trial's TrainConfig the field's own type; a key that is not
    a field (or epochs/seed, which the benchmark sets) or a value TrainConfig refuses: exit 2."""
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from bench_gpu import TrialSpec, train_options
    finally:
        sys.path.remove(str(SCRIPT.parent))

    given = train_options(["bucket=on", "batch_size=32", "grad_accum=1", "liger=off"])
    assert given == (("bucket", "on"), ("batch_size", 32), ("grad_accum", 1), ("liger", False))
    cfg = TrialSpec("tiny", 0, 1, seed=3, train=given).train_config(2)
    assert (cfg.epochs, cfg.seed, cfg.bucket, cfg.batch_size, cfg.grad_accum) == (2, 3, "on", 32, 1)
    with pytest.raises(ValueError, match="not a TrainConfig field"):
        train_options(["epochs=3"])  # the benchmark's own setting
    with pytest.raises(UserError, match="unknown bucket 'sideways'"):
        train_options(["bucket=sideways"])
    proc = run_bench("--size", "tiny", "--train", "nope=1")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "--train nope=1: not a TrainConfig field" in lines[0]
