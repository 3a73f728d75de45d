"""The Ray Tune function trainable: typed configs on the first lines, the model loaded inside the
trial, an evaluation and a checkpointed report every `eval_every` epochs, resume from the latest
checkpoint after a failure, and mean/std over `seeds` seeds. A trial of k >= 2 workers runs the
same code on each worker of a Ray Train TorchTrainer launched from the Tune trial."""

from __future__ import annotations

import dataclasses
import functools
import gc
import json
import math
import platform
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from ray import tune

from search_spaces._common import OPTIMIZER_KEYS
from sweeps import experiment as folder
from sweeps import faults, rows, workers
from sweeps.config import SweepConfig, hparam_names, make_job, sweep_from_dict
from sweeps.objectives import get_objectives, objective_values
from sweeps.relocate import inside, node_copy
from sweeps.workers import Session
from unlearn_core.errors import TrialDiverged
from unlearn_core.job import JobConfig, run_job
from unlearn_core.train import LoopState
from unlearn_core.version import VERSION


@dataclass(frozen=True)
class TrialSpec:
    """A Ray config, typed: the sweep, the sampled values, and what the driver computed once."""

    sweep: SweepConfig
    params: dict
    # the retain reference's JSON (launch.reference_and_target), from Ray's object store: the
    # trial never opens the experiment folder, which may be on the driver's disk alone
    reference: dict
    utility_floor: float  # absolute model_utility below which the trial is stopped
    experiment: str  # the experiment folder's path on the driver (only faults.py opens it)
    # stop after this epoch of the sampled schedule (`confirm` reruns a front point evaluated
    # mid-schedule, as export writes it); None: train every epoch
    stop_after: int | None = None

    def job(self, seed: int) -> JobConfig:
        """The seed's job; its reference is the copy on this process's node (relocate.node_copy)."""
        job = make_job(self.sweep, self.params, seed, str(node_copy(self.reference)))
        if self.stop_after is None or self.stop_after == job.train.epochs:
            return job
        return dataclasses.replace(
            job, train=dataclasses.replace(job.train, stop_after=self.stop_after)
        )


REPORT_POLL_S = 4.0  # twice Ray Train's default poll of its workers' reports


def trial_spec(config: dict, reference: dict) -> TrialSpec:
    """The trial's typed spec from Ray's config and the reference `tune.with_parameters` passed.
    config["reference"] only names that reference (relocate.digest; an experiment made before
    the object store carried it names its file): it is never opened."""
    sweep = sweep_from_dict(config["sweep"])
    params = {
        k: v for k, v in config.items() if k in OPTIMIZER_KEYS or k in hparam_names(sweep.method)
    }
    return TrialSpec(
        sweep,
        params,
        reference,
        float(config["utility_floor"]),
        str(inside("")),  # the folder the driver drives (sweeps/relocate.py)
        config.get("stop_after"),
    )


def _report_with_checkpoint(record: dict, state: dict, loop: LoopState, session: Session) -> None:
    """Report with the trial's state as a checkpoint. Ray's documented pattern: the folder is a
    TemporaryDirectory that Ray copies into the trial's storage during `report`, so it is
    deleted on return and nothing accumulates in the system temp dir (a full fine-tune's
    checkpoint is tens of GB). The state carries `progress["last"]`, the final record, so the
    last checkpoint alone is enough to re-report a finished trial after a stale restore.
    Rank 0 saves the state (weights and optimizer whole, also under FSDP: train._snapshot);
    every other rank what is its own, its retain-partner stream and a step's local gradients,
    into the same checkpoint folder (Ray Train merges the ranks' files)."""
    with tempfile.TemporaryDirectory(prefix="unlearn-ckpt-") as d:
        if session.rank == 0:
            torch.save({"progress": state, "loop": dataclasses.asdict(loop)}, Path(d) / "state.pt")
        else:
            own = {"pair_gen": loop.pair_gen, "pending_grads": loop.pending_grads}
            torch.save(own, Path(d) / f"rank{session.rank}.pt")
        session.report(record, checkpoint=session.checkpoint(d))


def _load(ckpt, rank: int = 0) -> tuple[dict, LoopState | None]:
    with ckpt.as_directory() as d:
        saved = torch.load(Path(d) / "state.pt", weights_only=False)
        if rank > 0 and saved["loop"]:
            saved["loop"] |= torch.load(Path(d) / f"rank{rank}.pt", weights_only=False)
    loop = LoopState(**saved["loop"]) if saved["loop"] else None
    return saved["progress"], loop


def _summary(per_seed: list[dict]) -> dict[str, float]:
    """Mean over seeds under the metric's own name, std under `<name>_std`.
    With several seeds a trial reports at its end; a retry starts the trial again."""
    keys = [k for k in per_seed[0] if isinstance(per_seed[0][k], int | float)]
    out = {k: float(np.mean([m[k] for m in per_seed])) for k in keys}
    if len(per_seed) > 1:
        out |= {f"{k}_std": float(np.std([m[k] for m in per_seed])) for k in keys}
    return out


def _trial_id() -> str | None:
    try:
        return tune.get_context().get_trial_id()
    except Exception:  # outside a Tune session (plain in-process use)
        return None


def trainable(config: dict, reference: dict) -> None:
    """The Tune trial: in this process, or (k >= 2 workers) as a TorchTrainer of k workers;
    `reference` comes from Ray's object store (tune.with_parameters, launch.py) and reaches
    every worker with the trial's code."""
    trial = functools.partial(run_trial, reference=reference)
    sweep = trial_spec(config, reference).sweep
    if sweep.workers() > 1:
        workers.fit(config, sweep, trial, _trial_id())
        return
    trial(config, workers.tune_session(_trial_id()))


def run_trial(config: dict, session: Session, reference: dict) -> None:
    """The trial's seeds, epochs and reports, the same on one process and on each of k ranks."""
    spec = trial_spec(config, reference)
    sweep = spec.sweep
    objectives = get_objectives(list(sweep.objectives))
    progress, loop = ({"seed_index": 0, "done": [], "epoch_metrics": {}}, None)
    if (ckpt := session.get_checkpoint()) is not None:
        progress, loop = _load(ckpt, session.rank)
        if loop is not None and "last" in progress and loop.final:
            # The trial had finished, but the Ray state a resumed sweep restored predates its
            # end: report the final result again instead of training anything twice.
            session.report(progress["last"])
            return
    acc = session.accelerator
    device = acc.device.type if acc is not None else "cuda" if torch.cuda.is_available() else "cpu"
    started = time.perf_counter()
    # under k workers only the last rank may fault (sweeps/faults.py), leaving the others waiting
    faulty = session.rank == session.world - 1
    fault = (
        faults.armed(folder.faults_path(Path(spec.experiment)), session.trial_id)
        if faulty
        else None
    )
    window: list[dict] = []  # the optimizer steps since the last report between evaluations
    since_step = {"epoch": 0, "time": time.perf_counter()}

    def on_step(log: dict) -> None:
        """Every report_every_steps-th step (on every rank: Ray Train's report is a barrier)."""
        window.append(log)
        if log["step"] % sweep.report_every_steps:
            return
        stats = training_stats(window, since_step, device)
        session.report(rows.step_report({"step": log["step"], "in_epoch": log["epoch"], **stats}))
        window.clear()
        since_step["time"] = time.perf_counter()

    for seed_index in range(progress["seed_index"], sweep.seeds):
        seed = sweep.seed + seed_index
        job = spec.job(seed)

        since = {"epoch": loop.epoch if loop is not None else 0, "time": time.perf_counter()}

        def on_epoch(epoch: int, metrics: dict, state: LoopState, seed=seed, since=since) -> None:
            progress["epoch_metrics"].setdefault(str(epoch), [])
            seen = {
                "metrics": metrics,
                "optimizer_steps": state.step,
                "train": training_stats(state.logs, since, device),
            }
            since.update(epoch=epoch, time=time.perf_counter())
            if sweep.seeds == 1:
                _report(
                    spec,
                    objectives,
                    epoch,
                    [seen],
                    [seed],
                    started,
                    device,
                    state,
                    progress,
                    session,
                )
            else:  # reported together once every seed has run
                progress["epoch_metrics"][str(epoch)].append(seen)
            if fault is not None:  # an injected fault may fire from now on
                # Ray Train's controller takes a worker's report at its next poll (every 2 s,
                # RAY_TRAIN_HEALTH_CHECK_INTERVAL_S): a worker killed sooner takes its report
                # and checkpoint with it, and the trial restarts from the one before
                fault.arm_after(REPORT_POLL_S if session.world > 1 else 0.0)

        if fault is not None:  # a one-epoch or resumed trial already has its checkpoint
            fault.ready = job.train.epochs == 1 or loop is not None
        try:
            run_job(
                job,
                eval_before=False,
                eval_every=sweep.eval_every,
                on_epoch=on_epoch,
                resume=loop,
                on_loss=fault.on_loss if fault is not None else None,
                on_step=on_step if sweep.report_every_steps else None,
                accelerator=acc,
                strategy=sweep.strategy,
            )
        except TrialDiverged as e:
            # Deterministic, so retrying is pointless: end the trial with the cause and no
            # objective values; the searcher records it as FAILED.
            session.report(rows.report({"diverged": 1.0, "failure": str(e), "seeds": [seed]}))
            return
        loop = None
        progress["seed_index"] = seed_index + 1
    if sweep.seeds > 1:
        seeds = [sweep.seed + i for i in range(sweep.seeds)]
        for epoch in sorted(progress["epoch_metrics"], key=int):
            evals = progress["epoch_metrics"][epoch]
            _report(
                spec, objectives, int(epoch), evals, seeds, started, device, None, progress, session
            )
    gc.collect()


def training_stats(logs: list[dict], since: dict, device: str) -> dict[str, float]:
    """What a long trial shows between evaluations: the mean training loss and the tokens/s of
    the optimizer steps since the last evaluation (`since`: its epoch and time), the learning
    rate now, and peak memory: the device's allocated peak since then on CUDA (reset here), the
    process's peak resident memory elsewhere."""
    steps = [log for log in logs if log["epoch"] > since["epoch"]]
    seconds = time.perf_counter() - since["time"]
    out = {
        "train_loss": float(np.mean([s["loss"] for s in steps])) if steps else math.nan,
        "lr": logs[-1]["lr"] if logs else math.nan,
        "tokens_per_s": sum(s.get("tokens", 0) for s in steps) / seconds if seconds > 0 else 0.0,
    }
    if device == "cuda":
        out["peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
    else:  # ru_maxrss is KiB on Linux
        out["peak_memory_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def _report(
    spec: TrialSpec,
    objectives,
    epoch: int,
    evals: list[dict],
    seeds: list[int],
    started: float,
    device: str,
    state: LoopState | None,
    progress: dict,
    session: Session,
) -> None:
    """One epoch's row (sweeps/rows.py): `evals` holds each seed's metrics and optimizer steps.
    The sampled params are Ray's trial config: ResultsLog writes them."""
    metrics = _summary([e["metrics"] for e in evals])
    train = {k: float(np.mean([e["train"][k] for e in evals])) for k in evals[0].get("train", {})}
    values = objective_values(metrics, objectives)  # raises on NaN: the trial fails, nothing told
    job = spec.job(seeds[0])
    run = {
        "epoch": epoch,
        "seeds": seeds,
        "optimizer_steps": evals[0]["optimizer_steps"],  # the seeds share one schedule
        "effective_batch": job.train.batch_size * job.train.grad_accum * session.world,
        "world_size": session.world,
        "wall_time_s": time.perf_counter() - started,
        "device": device,
        "host": platform.node(),
        "version": VERSION,
        "utility_floor": spec.utility_floor,
        "utility_violation": spec.utility_floor - metrics["model_utility"],
        **train,  # train_loss, lr, tokens_per_s, peak_memory_gib (training_stats)
    }
    assert all(math.isfinite(v) for v in values.values()), "objectives must be finite"
    record = rows.report(run, values, metrics)
    progress["last"] = record
    if state is None:  # several seeds: reported at the trial's end, nothing left to resume
        session.report(record)
    else:
        _report_with_checkpoint(record, progress, state, session)


def result_json(record: dict) -> str:
    return json.dumps(record, default=float)
