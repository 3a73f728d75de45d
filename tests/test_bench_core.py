"""Smoke runs of the core benchmark scripts at their smallest size, so they cannot rot: the
evaluation timing (batched vs one at a time) and the sweep overhead (sweep vs plain loop)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def run(script: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_bench_eval_prints_times_and_agreement(small_benchmark):
    out = run("bench_eval.py", "--benchmark", "tiny-tofu-small", "--limit", "8")
    assert "batched evaluation:" in out and "one example at a time:" in out
    assert "forget generations identical: True" in out


def test_bench_overhead_prints_the_ratio(small_benchmark):
    out = run("bench_overhead.py", "--trials", "2", "--epochs", "1")
    ratio = next(line for line in out.splitlines() if "ratio sweep/loop (trials only)" in line)
    assert float(ratio.split()[4]) > 0
