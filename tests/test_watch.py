"""Watching a long trial (issue 15, item 5): the loop counts each optimizer step's unpadded input
tokens on the host, and the trainable turns the steps since the last evaluation into the training
loss, learning rate, tokens/s and peak memory that every evaluated epoch's row and progress line
carry."""

from __future__ import annotations

import math

import pytest

from sweeps.trainable import training_stats
from unlearn_core.methods import get_method
from unlearn_core.train import TrainConfig, unlearn


def test_each_step_logs_the_unpadded_tokens_of_its_micro_batches(
    tiny_model, tiny_examples, tiny_tokenizer
):
    forget, retain = tiny_examples
    method = get_method("grad_diff")
    cfg = TrainConfig(lr=1e-3, epochs=2, batch_size=2, grad_accum=2, warmup_epochs=0)
    res = unlearn(
        tiny_model,
        method,
        method.make_hparams({}),
        cfg,
        forget,
        retain,
        tiny_tokenizer.pad_token_id,
    )
    per_epoch = [sum(log["tokens"] for log in res.logs if log["epoch"] == e) for e in (1, 2)]
    forget_tokens = sum(len(v["input_ids"]) for row in forget for v in row.values())
    # every forget row once per epoch, and one retain partner per forget row on top
    lengths = [len(v["input_ids"]) for row in retain for v in row.values()]
    for n in per_epoch:
        assert n == int(n)
        assert forget_tokens + len(forget) * min(lengths) <= n
        assert n <= forget_tokens + len(forget) * max(lengths)


def test_training_stats_cover_the_steps_since_the_last_evaluation():
    logs = [
        {"step": 1, "epoch": 1, "lr": 2e-5, "loss": 9.0, "tokens": 100.0},
        {"step": 2, "epoch": 2, "lr": 1e-5, "loss": 1.0, "tokens": 300.0},
        {"step": 3, "epoch": 2, "lr": 5e-6, "loss": 3.0, "tokens": 500.0},
    ]
    import time

    since = {"epoch": 1, "time": time.perf_counter() - 2.0}
    out = training_stats(logs, since, "cpu")
    assert out["train_loss"] == pytest.approx(2.0) and out["lr"] == 5e-6
    assert 0 < out["tokens_per_s"] <= 800 / 2.0  # 800 tokens in at least 2 s
    assert out["tokens_per_s"] > 800 / 60
    assert out["peak_memory_gib"] > 0.01  # the process's peak resident memory
    empty = training_stats([], {"epoch": 0, "time": time.perf_counter()}, "cpu")
    assert math.isnan(empty["train_loss"]) and math.isnan(empty["lr"])


def _absent(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


def _no_dashboard() -> bool:
    from ray._private.utils import get_dashboard_dependency_error

    return get_dashboard_dependency_error() is not None


WATCH_BAD = [
    (["--log-to", "tensorboard"], "unknown log_to 'tensorboard'; accepted: wandb, mlflow", True),
    (["--log-to", "wandb"], "--log-to wandb needs the wandb package", _absent("wandb")),
    (["--log-to", "mlflow"], "--log-to mlflow needs the mlflow package", _absent("mlflow")),
    (["--dashboard", "--address", "127.0.0.1:6379"], "a running cluster has its own", True),
    (["--dashboard"], "--dashboard needs Ray's dashboard packages", _no_dashboard()),
    (["--liger"], "--liger runs Triton kernels on CUDA GPUs only", True),
    (
        ["--liger", "--gpus-per-trial", "1"],
        "--liger needs the liger-kernel package",
        _absent("liger_kernel"),
    ),
]


@pytest.mark.parametrize(
    "flags,message,applies", WATCH_BAD, ids=[" ".join(f) for f, _, _ in WATCH_BAD]
)
def test_watching_options_refuse_in_one_line_and_write_nothing(flags, message, applies, tmp_path):
    import subprocess
    import sys

    if not applies:
        pytest.skip("the package this refusal is about is installed here")
    out = subprocess.run(
        [sys.executable, "-m", "unlearn_sweep", "sweep", "--method", "npo", "--trials", "2"]
        + ["--output", str(tmp_path / "out"), *flags],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and message in lines[0], out.stderr
    assert list(tmp_path.iterdir()) == []


def test_loading_hides_transformers_bars_but_not_the_hubs_download_bars(monkeypatch):
    from huggingface_hub.utils import are_progress_bars_disabled, disable_progress_bars
    from transformers.utils import logging as hf_logging

    from unlearn_core.models import _quiet_loading

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    hf_logging.enable_progress_bar()
    _quiet_loading()
    assert not hf_logging.is_progress_bar_enabled()  # no "Loading weights" bar per load
    assert not are_progress_bars_disabled()  # a first download shows its progress
    disable_progress_bars()  # the user (or HF_HUB_DISABLE_PROGRESS_BARS) turned them off
    _quiet_loading()
    assert are_progress_bars_disabled()


def test_report_every_steps_must_not_be_negative():
    from sweeps.config import SweepConfig
    from unlearn_core.errors import UserError

    with pytest.raises(UserError, match="report_every_steps must be >= 0"):
        SweepConfig(method="npo", report_every_steps=-1)


@pytest.mark.slow  # a real Ray sweep
def test_reports_every_n_steps_reach_rays_trial_logs_and_nothing_else(tmp_path, small_benchmark):
    """--report-every-steps 1: each trial reports its training statistics after every optimizer
    step into Ray's own per-trial result.json (what TensorBoard shows), while the results log,
    the study and the analysis see only the evaluated epochs, as without it."""
    import json
    import subprocess
    import sys

    from sweeps.experiment import is_epoch_point, load_study

    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "unlearn_sweep", "sweep", "--benchmark", "tiny-tofu-small"]
        + ["--split", "forget10", "--method", "npo", "--trials", "2", "--fix", "epochs=2"]
        + ["--report-every-steps", "1", "--output", str(out), "--name", "steps"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    home = out / "steps"
    logged = [json.loads(x) for x in (home / "results" / "npo.jsonl").open()]
    evaluated = [r for r in logged if r["event"] == "result"]
    assert len(evaluated) == 4 and all("objectives" in r for r in evaluated)  # 2 trials x 2
    assert not any("between_evaluations" in r.get("run", {}) for r in logged)
    study = load_study(home, "npo")
    assert len([t for t in study.trials if not is_epoch_point(t)]) == 2
    assert len([t for t in study.trials if is_epoch_point(t)]) == 2  # each trial's epoch 1
    per_trial = sorted(home.rglob("result.json"))
    assert len(per_trial) == 2
    for path in per_trial:
        reports = [json.loads(x) for x in path.read_text().splitlines()]
        steps = [r["run"] for r in reports if r["run"].get("between_evaluations")]
        total = max(r["run"]["optimizer_steps"] for r in reports if "objectives" in r)
        assert [s["step"] for s in steps] == list(range(1, total + 1))  # every step, in order
        for s in steps:
            assert math.isfinite(s["train_loss"]) and s["lr"] >= 0 and s["in_epoch"] in (1, 2)
            assert s["tokens_per_s"] > 0 and s["peak_memory_gib"] > 0
