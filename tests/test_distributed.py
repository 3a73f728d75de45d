"""Multi-device trials (issue 15): --workers-per-trial, --gpus-per-trial k and --strategy checked
before anything is written; the training loop on 2 gloo processes (DDP and FSDP) giving the
1-process metrics at the same effective batch, and an FSDP run resumed from its sharded state's
checkpoint; and real sweeps (slow) whose 2-worker trials, one of them SIGKILLed mid-epoch, report
what the 1-worker trial reports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from sweeps.config import SweepConfig
from unlearn_core.errors import UserError
from unlearn_core.source import Source

SWEEP = ["sweep", "--method", "npo", "--benchmark", "tiny-tofu-small", "--trials", "2"]
# The 2-rank runs match the 1-process run to rounding: the same forget rows make each optimizer
# step (rank r takes rows r, r+2, ... of the shared order), NPO's loss is a mean over sequences
# (so the mean of the ranks' means is the batch's), and without a retain term the ranks' own
# retain-partner streams play no part. Measured: 5e-7 on the metrics, 2e-5 on the losses (fp32
# sums in another order); asserted with margin:
METRIC_TOL = 1e-4
LOSS_TOL = 1e-3


# ---- configuration and bad input (no Ray, no training) ----


def _cfg(**kw) -> SweepConfig:
    return SweepConfig("npo", Source("tiny-tofu-small"), **kw)


def test_workers_follow_the_flags():
    assert _cfg().workers() == 1
    assert _cfg(workers_per_trial=2).workers() == 2
    assert _cfg(gpus_per_trial=0.5).workers() == 1
    assert _cfg(gpus_per_trial=1).workers() == 1
    assert _cfg(gpus_per_trial=2).workers() == 2
    assert _cfg(gpus_per_trial=4, workers_per_trial=4, strategy="fsdp").workers() == 4


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"strategy": "fsdp"}, "--strategy fsdp shards over workers"),
        ({"strategy": "fsdp", "gpus_per_trial": 1}, "--strategy fsdp shards over workers"),
        ({"strategy": "zero3"}, "unknown strategy 'zero3'"),
        ({"workers_per_trial": 0}, "workers_per_trial must be >= 1"),
        ({"gpus_per_trial": 1.5}, "a fraction below 1 or a whole number"),
        ({"gpus_per_trial": 2, "workers_per_trial": 3}, "contradicts it"),
    ],
)
def test_bad_worker_settings_are_refused(kw, message):
    with pytest.raises(UserError, match=message):
        _cfg(**kw)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--gpus-per-trial", "1.5"], "a fraction below 1 or a whole number"),
        (["--strategy", "fsdp"], "--strategy fsdp shards over workers"),
        (["--workers-per-trial", "1", "--strategy", "fsdp"], "--strategy fsdp shards"),
        (["--workers-per-trial", "0"], "workers_per_trial must be >= 1"),
        (["--gpus-per-trial", "3"], "--gpus-per-trial 3.0 but the cluster has 2 GPUs"),
        (["--workers-per-trial", "3"], "--cpus-per-trial 1.0 x 3 workers but the cluster has 2"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(
    args, message, tmp_path, monkeypatch, capsys
):
    """Through the CLI, on a pretend cluster of 2 CPUs and 2 GPUs (no Ray starts)."""
    import ray

    from sweeps import launch
    from unlearn_sweep.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(launch, "init_ray", lambda *a, **k: None)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0, "GPU": 2.0})
    code = main([*SWEEP, *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert not list(tmp_path.iterdir())  # refused before any experiment folder exists


def test_slots_count_every_worker(monkeypatch):
    import ray

    from sweeps.launch import slots

    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 16.0, "GPU": 8.0})
    assert slots(_cfg(trials=32, gpus_per_trial=2)) == 4  # 8 GPUs / 2 per trial
    assert slots(_cfg(trials=32, workers_per_trial=4, cpus_per_trial=2)) == 2  # 16 / (4 x 2)
    assert slots(_cfg(trials=32, workers_per_trial=2, strategy="fsdp")) == 8


# ---- the loop on 2 gloo processes (torch.multiprocessing, no Ray) ----


def _job(batch_size: int, epochs: int = 2):
    from unlearn_core.job import JobConfig
    from unlearn_core.train import TrainConfig

    train = TrainConfig(
        lr=1e-3, epochs=epochs, batch_size=batch_size, grad_accum=2, warmup_epochs=0.5
    )
    return JobConfig("npo", {"retain_loss": "none"}, Source("tiny-tofu-small", "forget10"), train)


def _summary(res) -> dict:
    return {"after": res.after, "loss": [log["loss"] for log in res.train.logs]}


def _rank(rank: int, port: int, strategy: str, out: str, resume_from: str | None) -> None:
    """One of 2 ranks: the environment Ray Train's torch backend sets, a gloo group, the job."""
    from unlearn_core import distributed
    from unlearn_core.job import run_job

    env = {"RANK": rank, "WORLD_SIZE": 2, "LOCAL_RANK": rank, "LOCAL_WORLD_SIZE": 2}
    os.environ.update({k: str(v) for k, v in env.items()})
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    acc = distributed.accelerator()
    assert acc.num_processes == 2 and acc.process_index == rank
    resume = torch.load(resume_from, weights_only=False) if resume_from else None
    states = []
    res = run_job(
        _job(2),
        eval_before=False,
        eval_every=1,
        accelerator=acc,
        strategy=strategy,
        resume=resume,
        on_epoch=lambda epoch, metrics, state: states.append(state),
    )
    if rank == 0:
        Path(out).write_text(json.dumps(_summary(res)))
        torch.save(states[0], out + ".epoch1.pt")  # weights and AdamW state whole (gathered)
    torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_ranks(tmp: Path, strategy: str, resume_from: Path | None = None) -> dict:
    out = tmp / f"{strategy}{'-resumed' if resume_from else ''}.json"
    args = (_free_port(), strategy, str(out), str(resume_from) if resume_from else None)
    mp.spawn(_rank, args=args, nprocs=2)
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def one_process() -> dict:
    """The 1-process run at effective batch 8: micro-batches of 4, 2 per step."""
    from unlearn_core.job import run_job

    return _summary(run_job(_job(4), eval_before=False, eval_every=1))


def _assert_same(a: dict, b: dict) -> None:
    assert len(a["loss"]) == len(b["loss"]) > 0  # the same optimizer steps
    for x, y in zip(a["loss"], b["loss"], strict=True):
        assert abs(x - y) <= LOSS_TOL
    assert a["after"].keys() == b["after"].keys()
    gaps = {k: abs(a["after"][k] - b["after"][k]) for k in a["after"]}
    assert max(gaps.values()) <= METRIC_TOL, gaps


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_ranks_give_the_one_process_metrics(strategy, one_process, tmp_path):
    """2 ranks x micro-batch 2 x 2 accumulation = 1 process x 4 x 2, to METRIC_TOL; and an FSDP
    run resumed from its epoch-1 snapshot (gathered from the shards) finishes as the whole run."""
    two = _two_ranks(tmp_path, strategy)
    _assert_same(one_process, two)
    assert one_process["loss"][0] != one_process["loss"][-1]  # training moved the model
    if strategy == "fsdp":
        snapshot = tmp_path / "fsdp.json.epoch1.pt"
        state = torch.load(snapshot, weights_only=False)
        assert state.epoch == 1 and all(not t.is_meta for t in state.model.values())
        resumed = _two_ranks(tmp_path, strategy, resume_from=snapshot)
        _assert_same(two, resumed)


# ---- real sweeps (Ray Tune + Ray Train, gloo on CPU) ----


def _sweep(out: Path, name: str, *args: str, **env: str) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "unlearn_sweep",
        *SWEEP[:5],
        "--split",
        "forget10",
        "--trials",
        "1",
        "--fix",
        "epochs=2",
        "--output",
        str(out),
        "--name",
        name,
        *args,
    ]
    run = subprocess.run(
        cmd, env={**os.environ, **env}, capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return out / name


def _epochs(home: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (home / "results" / "npo.jsonl").open()]
    return {r["run"]["epoch"]: r for r in rows if "objectives" in r}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> dict[str, Path]:
    """One 1-trial sweep each: 1 worker at micro-batch 4, and 2 workers at micro-batch 2 (the
    same effective batch 8) under DDP, whose worker of rank 1 is SIGKILLed in epoch 2, and FSDP."""
    out = tmp_path_factory.mktemp("dist")
    return {
        "one": _sweep(out, "one", "--batch-size", "4", "--grad-accum", "2"),
        "ddp": _sweep(
            out,
            "ddp",
            *("--batch-size", "2", "--grad-accum", "2", "--workers-per-trial", "2"),
            UNLEARN_SWEEP_FAULTS="kill@0",
        ),
        "fsdp": _sweep(
            out,
            "fsdp",
            *("--batch-size", "2", "--grad-accum", "2", "--workers-per-trial", "2"),
            *("--strategy", "fsdp"),
        ),
    }


# NPO's sweep has a retain term: each rank draws its own retain partners (train.epoch_batches),
# so the 2-worker trials see other retain rows than the 1-worker one (and DDP's the same as
# FSDP's: those two agree to METRIC_TOL, test_a_killed_worker_...). Measured on tiny-tofu-small
# over 2 epochs, as a fraction of max(1, |metric|): up to 0.024 (extraction_strength, epoch 1;
# privleak, on a -100..100 scale, differs by 0.34); asserted:
SWEEP_TOL = 0.05


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_worker_trials_report_the_one_worker_metrics(strategy, sweeps):
    one, two = _epochs(sweeps["one"]), _epochs(sweeps[strategy])
    assert sorted(one) == sorted(two) == [1, 2]  # every epoch reported
    for epoch in (1, 2):
        assert two[epoch]["run"]["world_size"] == 2 and one[epoch]["run"]["world_size"] == 1
        assert two[epoch]["run"]["effective_batch"] == one[epoch]["run"]["effective_batch"] == 8
        assert two[epoch]["run"]["optimizer_steps"] == one[epoch]["run"]["optimizer_steps"]
        a, b = one[epoch]["metrics"], two[epoch]["metrics"]
        gaps = {k: abs(a[k] - b[k]) / max(1.0, abs(a[k])) for k in a if isinstance(a[k], float)}
        assert gaps and max(gaps.values()) <= SWEEP_TOL, gaps


@pytest.mark.slow
def test_a_killed_worker_resumes_from_its_checkpoint_and_finishes(sweeps):
    """Rank 1 SIGKILLed in epoch 2 (after epoch 1's checkpoint): Ray Train restarts the workers,
    which resume from that checkpoint, so Tune sees epoch 1 once (a restart from scratch would
    report it twice) and then epoch 2; and since every rank's state was restored (rank 1's
    retain stream included), the trial ends where the unkilled FSDP trial does."""
    home = sweeps["ddp"]
    assert [p.read_text() for p in (home / "faults").glob("*.fired")] == ["kill"]
    (trial_dir,) = (home / "ray" / "npo").glob("trainable_*")
    assert list((trial_dir / "train").glob("checkpoint_*"))  # Ray Train's, in the trial's folder
    told = [json.loads(line) for line in (trial_dir / "result.json").open()]
    assert [r["run"]["epoch"] for r in told] == [1, 2]
    killed, clean = _epochs(home), _epochs(sweeps["fsdp"])
    for epoch in (1, 2):
        a, b = killed[epoch]["metrics"], clean[epoch]["metrics"]
        gaps = {k: abs(a[k] - b[k]) for k in a if isinstance(a[k], float)}
        assert gaps and max(gaps.values()) <= METRIC_TOL, gaps


def test_each_rank_checkpoints_its_own_retain_stream_and_gets_it_back(tmp_path):
    """Rank 0 saves the whole state, rank 1 only its own part, into one folder (as Ray Train
    merges them); loading on rank 1 gives rank 0's weights with rank 1's retain-partner stream."""
    import shutil

    from sweeps.trainable import _load, _report_with_checkpoint
    from sweeps.workers import Session
    from unlearn_core.train import LoopState

    folder = tmp_path / "ckpt"

    def report(record, checkpoint=None):  # Ray copies the folder during report
        shutil.copytree(checkpoint, folder, dirs_exist_ok=True)

    def loop(rank: int) -> LoopState:
        gen = torch.Generator().manual_seed(100 + rank)
        weights = {"w": torch.full((2,), float(rank))}
        return LoopState(1, 5, weights, {}, {}, gen.get_state(), gen.get_state(), [])

    for rank in (0, 1):
        session = Session(report, lambda: None, str, "t", rank=rank, world=2)
        _report_with_checkpoint({"r": rank}, {"seed_index": 0}, loop(rank), session)
    assert sorted(p.name for p in folder.iterdir()) == ["rank1.pt", "state.pt"]

    class Folder:  # a Checkpoint's as_directory
        def as_directory(self):
            import contextlib

            return contextlib.nullcontext(folder)

    for rank in (0, 1):
        progress, state = _load(Folder(), rank)
        assert progress == {"seed_index": 0} and torch.equal(state.model["w"], torch.zeros(2))
        assert torch.equal(state.pair_gen, loop(rank).pair_gen)
        assert torch.equal(state.order_gen, loop(0).order_gen)  # shared by the ranks
