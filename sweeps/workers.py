"""A trial's session: Tune's own (the trial in one process) or Ray Train's on each worker of a
TorchTrainer that the Tune trial fits (k >= 2 workers: --workers-per-trial, --gpus-per-trial k)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import ray.train
from accelerate import Accelerator
from ray import tune

from sweeps.config import SweepConfig
from unlearn_core import distributed


@dataclass(frozen=True)
class Session:
    """Where the trial code reports and finds its checkpoint: Tune's session (the trial in one
    process) or Ray Train's on each of k workers (every rank reports: Train's `report` is a
    barrier; rank 0's metrics reach Tune through TuneReportCallback)."""

    report: Callable[..., None]  # report(metrics, checkpoint=None)
    get_checkpoint: Callable[[], object]  # -> the session's Checkpoint or None
    checkpoint: Callable[[str], object]  # a folder -> the session's Checkpoint
    trial_id: str | None
    rank: int = 0
    world: int = 1
    accelerator: Accelerator | None = None  # None: one process (run_job's own)


Trial = Callable[[dict, Session], None]  # the trial's code (trainable.run_trial)


def trial_resources(cfg: SweepConfig) -> dict:
    """What Tune reserves for a trial: its CPUs and GPUs, or with k >= 2 workers nothing of its
    own: the TorchTrainer's workers reserve theirs (Train V2 places them in a placement group of
    its own, so bundles reserved here would be reserved twice; slots() counts them). Tune needs
    a non-empty request: one byte of memory."""
    if cfg.workers() > 1:
        return {"cpu": 0, "memory": 1}
    return {"cpu": cfg.cpus_per_trial, "gpu": cfg.gpus_per_trial}


def tune_session(trial_id: str | None) -> Session:
    return Session(tune.report, tune.get_checkpoint, tune.Checkpoint.from_directory, trial_id)


def fit(config: dict, sweep: SweepConfig, trial: Trial, trial_id: str | None) -> None:
    """Ray's way to tune a distributed run (Train V2): a TorchTrainer fitted inside the Tune
    function, reporting to Tune through TuneReportCallback. Its storage is this trial's folder,
    so a retried trial's TorchTrainer finds the run's checkpoints there and resumes; a dead
    worker restarts the worker group from the last checkpoint (FailureConfig). On GPUs one each
    (nccl), else gloo on cpus_per_trial CPUs each."""
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    gpu = sweep.gpus_per_trial >= 1
    trainer = TorchTrainer(
        functools.partial(_worker, trial),
        train_loop_config=config | {"tune_trial_id": trial_id},
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=sweep.workers(),
            use_gpu=gpu,
            resources_per_worker={"CPU": sweep.cpus_per_trial} | ({"GPU": 1} if gpu else {}),
        ),
        run_config=ray.train.RunConfig(
            name="train",
            storage_path=tune.get_context().get_trial_dir(),
            failure_config=ray.train.FailureConfig(max_failures=sweep.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=sweep.keep_checkpoints),
            callbacks=[TuneReportCallback()],
        ),
    )
    trainer.fit()


def _worker(trial: Trial, config: dict) -> None:
    """One TorchTrainer worker: the trial's code on this rank."""
    ctx = ray.train.get_context()
    session = Session(
        ray.train.report,
        ray.train.get_checkpoint,
        ray.train.Checkpoint.from_directory,
        config["tune_trial_id"],
        ctx.get_world_rank(),
        ctx.get_world_size(),
        distributed.accelerator(),
    )
    trial(config, session)
