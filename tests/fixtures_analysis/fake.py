"""A realistic fake experiment folder, written in exactly the format sweeps/launch.py,
sweeps/callbacks.py (ResultsLog) and sweeps/search.py (UnlearnSearch) produce: the manifest, one
results JSONL per method (Ray fields, retries, repeated epochs, a diverged and a failed trial, one
stopped by the utility floor, one still running), the Optuna journal with constraints and user
attributes, and the reference metrics. Metrics follow a smooth, seeded forget/utility trade-off."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from search_spaces import SPACES
from search_spaces._common import default_point
from sweeps import rows
from sweeps.config import SweepConfig, to_dict
from sweeps.experiment import EPOCH_OF
from sweeps.objectives import get_objectives, objective_values
from unlearn_core.methods import get_method
from unlearn_core.source import Source

# the built-in tiny-tofu-small target and retain models on forget10, as a real sweep measured them
TARGET = {
    "forget_quality": 1.7753e-06,
    "model_utility": 0.8458,
    "forget_truth_ratio": 0.5116,
    "forget_Q_A_ROUGE": 0.9922,
    "forget_Q_A_Prob": 0.9833,
    "extraction_strength": 0.995,
    "privleak": -99.99,
    "exact_memorization": 0.9988,
    "mia_min_k": 1.0,
}
RETAIN = {
    "forget_quality": 1.0,
    "model_utility": 0.8391,
    "forget_truth_ratio": 0.6642,
    "forget_Q_A_ROUGE": 0.41,
    "forget_Q_A_Prob": 0.2217,
    "extraction_strength": 0.1125,
    "privleak": 0.0,
    "exact_memorization": 0.62,
    "mia_min_k": 0.5,
}
# outcome of each trial by index (the rest complete); index 0 runs the reference defaults
OUTCOMES = {2: "diverged", 3: "failed", 4: "stopped", 5: "retried", 7: "running"}


def _metrics(params: dict, epoch: int, rng: np.random.Generator) -> dict:
    """A trade-off: more forgetting (lr x epochs) raises forget quality and costs utility."""
    s = params["lr"] / 1e-3 * epoch / 4 * (1 + params.get("beta", 0.1))
    log10_fq = -5.75 + 5.7 * (1 - math.exp(-0.6 * s)) + rng.normal(0, 0.3)
    mu = 0.846 * math.exp(-0.12 * s * s / (1 + params.get("alpha", 1.0))) + rng.normal(0, 0.005)
    return {
        "forget_quality": float(min(10**log10_fq, 1.0)),
        "model_utility": float(mu),
        "forget_truth_ratio": 0.51 + 0.04 * s,
        "forget_Q_A_ROUGE": 0.99 / (1 + s),
        "forget_Q_A_Prob": 0.98 / (1 + s),
        "extraction_strength": 0.99 / (1 + s),
        "privleak": -99.9 / (1 + s),
        "exact_memorization": 0.99 / (1 + 0.2 * s),
        "mia_min_k": 0.5 + 0.5 / (1 + s),
    }


def _ray_fields(trial_id: str, epoch: int, t0: float) -> dict:
    """What Ray adds to a trial's report before the callbacks see it (config, the whole of it)."""
    return {
        "config": {"sweep": {}, "reference": "reference/x.json", "lr": 1e-3},
        "timestamp": int(t0 + 10 * epoch),
        "checkpoint_dir_name": f"checkpoint_{epoch:06d}",
        "should_checkpoint": True,
        "done": False,
        "training_iteration": epoch,
        "trial_id": trial_id,
        "date": "2026-11-23_01-00-00",
        "time_this_iter_s": 10.0,
        "time_total_s": 10.0 * epoch,
        "pid": 4242,
        "node_ip": "10.0.0.7",
        "hostname": "node-7",
        "time_since_restore": 10.0 * epoch,
        "iterations_since_restore": epoch,
    }


def _result(
    cfg: SweepConfig,
    trial_id: str,
    params: dict,
    epoch: int,
    floor: float,
    rng: np.random.Generator,
) -> dict:
    m = _metrics(params, epoch, rng)
    values = objective_values(m, get_objectives(list(cfg.objectives)))
    run = {
        "epoch": epoch,
        "seeds": [cfg.seed],
        "optimizer_steps": 3 * epoch,
        "effective_batch": cfg.batch_size * cfg.grad_accum,
        "world_size": 1,
        "wall_time_s": 10.0 * epoch,
        "device": "cpu",
        "host": "node-7",
        "version": "0.1.0",
        "utility_floor": floor,
        "utility_violation": floor - m["model_utility"],
    }
    # what ResultsLog writes of the trainable's report, with Ray's fields as Ray adds them
    report = rows.report(run, values, m) | _ray_fields(trial_id, epoch, 1.8e9)
    return rows.log_row("result", trial_id, cfg.method, params, report)


def defaults_point(cfg: SweepConfig) -> dict:
    hp = dataclasses.asdict(get_method(cfg.method).hparams())
    point = default_point("tiny") | hp
    return {k: v for k, v in point.items() if k not in cfg.fixed and not isinstance(v, str)}


def _epoch_points(cfg, study, trial, trial_id: str, results: list[dict]) -> None:
    """As UnlearnSearch adds them: each evaluated epoch in `results` (once per epoch, the last
    report of it standing) as a completed study trial marked EPOCH_OF the Ray trial."""
    keys = [o.key for o in get_objectives(list(cfg.objectives))]
    if results:
        trial.set_user_attr("ray_trial_id", trial_id)
    for r in {r["run"]["epoch"]: r for r in results}.values():
        study.add_trial(
            optuna.trial.create_trial(
                values=[r["objectives"][k] for k in keys],
                params=trial.params,
                distributions=trial.distributions,
                user_attrs={EPOCH_OF: trial_id, "epoch": r["run"]["epoch"]}
                | {"stop_after": r["run"]["epoch"]},
                constraints={"utility_floor": r["run"]["utility_violation"]},
            )
        )


def _trial(cfg, study, outcome: str, trial_id: str, floor: float, rng, lines: list) -> None:
    trial = study.ask()
    params = SPACES[cfg.method](trial, cfg.space_options())  # as the sweep runs it
    last = None
    if outcome in ("failed", "crashed"):  # failed: errors in epoch 2 after reporting epoch 1
        if outcome == "failed":
            lines.append(_result(cfg, trial_id, params, 1, floor, rng))
            _epoch_points(cfg, study, trial, trial_id, lines[-1:])
        error = "RuntimeError: CUDA error: out of memory"
        lines.append(rows.log_row("error", trial_id, cfg.method, params, error=error, time=1.8e9))
        trial.set_user_attr("ray_trial_id", trial_id)
        trial.set_user_attr("failure", "error")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    if outcome == "diverged":
        failure = "loss became non-finite (nan) at optimizer step 4"
        run = {"diverged": 1.0, "failure": failure, "seeds": [cfg.seed]}
        report = rows.report(run) | _ray_fields(trial_id, 1, 1.8e9)
        lines.append(rows.log_row("result", trial_id, cfg.method, params, report))
        lines.append(rows.log_row("complete", trial_id, cfg.method, params, time=1.8e9))
        trial.set_user_attr("ray_trial_id", trial_id)
        trial.set_user_attr("failure", "loss became non-finite (nan) at optimizer step 4")
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
        return
    epochs = int(params["epochs"])
    stop = min(2, epochs) if outcome == "stopped" else epochs
    for epoch in range(1, stop + 1):
        last = _result(cfg, trial_id, params, epoch, floor, rng)
        if outcome == "stopped" and epoch == stop:
            last["metrics"]["model_utility"] = floor * 0.5  # the stopper ends it here
            if "model_utility" in last["objectives"]:
                last["objectives"]["model_utility"] = floor * 0.5
            last["run"]["utility_violation"] = floor * 0.5
        lines.append(last)
        if outcome == "retried" and epoch == 1:  # a worker died: epoch 1 again from scratch
            error = "ray.exceptions.NodeDiedError"
            lines.append(rows.log_row("retry", trial_id, cfg.method, None, error=error, time=1.8e9))
            last = _result(cfg, trial_id, params, 1, floor, rng)
            lines.append(last)
    # every epoch but the last reported: a running trial's last is still pending in the searcher
    mine = [r for r in lines if r["event"] == "result" and r["trial_id"] == trial_id]
    _epoch_points(cfg, study, trial, trial_id, [r for r in mine if r["run"]["epoch"] < stop])
    if outcome == "running":  # no complete event, Optuna trial left RUNNING
        return
    lines.append(rows.log_row("complete", trial_id, cfg.method, params, time=1.8e9))
    trial.set_user_attr("ray_trial_id", trial_id)
    trial.set_user_attr("epoch", int(last["run"]["epoch"]))
    trial.set_constraint("utility_floor", float(last["run"]["utility_violation"]))
    study.tell(trial, [last["objectives"][o.key] for o in get_objectives(list(cfg.objectives))])


def write_experiment(
    home: Path,
    methods: tuple[str, ...] = ("npo", "grad_diff"),
    trials: int = 9,
    seed: int = 0,
    partial_last_line: bool = False,
    outcomes: dict[int, str] | None = None,
    **sweep,
) -> Path:
    """Write the folder; `outcomes` maps trial index -> complete | failed | crashed (fails before
    any report) | diverged | stopped | retried | running (default OUTCOMES); `sweep` overrides
    SweepConfig fields."""
    outcomes = OUTCOMES if outcomes is None else outcomes
    cfgs = [
        SweepConfig(
            method=m,
            source=Source("tiny-tofu-small", "forget10"),
            trials=trials,
            seed=seed,
            **sweep,
        )
        for m in methods
    ]
    home.mkdir(parents=True)
    manifest = {
        "tool": "unlearn-sweep",
        "version": "0.1.0",
        "name": home.name,
        "created": "2026-11-23T01:00:00+00:00",
        "sweeps": [to_dict(c) for c in cfgs],
        "defaults": {c.method: defaults_point(c) for c in cfgs},
    }
    (home / "unlearn_sweep.json").write_text(json.dumps(manifest, indent=2))
    ref = home / "reference"
    ref.mkdir()
    (ref / "target-tiny-tofu-small-forget10.json").write_text(json.dumps(TARGET))
    (ref / "retain-tiny-tofu-small-forget10.json").write_text(json.dumps(RETAIN))
    (ref / "tiny-tofu-small-forget10.json").write_text(json.dumps({"per_sample": []}))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for k, cfg in enumerate(cfgs):
        rng = np.random.default_rng(seed + k)
        (home / "optuna").mkdir(exist_ok=True)
        storage = JournalStorage(JournalFileBackend(str(home / "optuna" / f"{cfg.method}.journal")))
        dirs = [
            "maximize" if o.mode == "max" else "minimize"
            for o in get_objectives(list(cfg.objectives))
        ]
        study = optuna.create_study(
            study_name=cfg.method,
            storage=storage,
            directions=dirs,
            sampler=optuna.samplers.RandomSampler(seed=seed + k),
        )
        study.enqueue_trial(manifest["defaults"][cfg.method])
        floor = cfg.utility_floor * TARGET["model_utility"]
        lines: list[dict] = []
        for i in range(trials):
            _trial(
                cfg, study, outcomes.get(i, "complete"), f"{k}a{i:03d}_{i:05d}", floor, rng, lines
            )
        text = "".join(json.dumps(x) + "\n" for x in lines)
        if partial_last_line:  # the driver was writing when we read
            text += '{"event": "result", "trial_id": "x'
        (home / "results").mkdir(exist_ok=True)
        (home / "results" / f"{cfg.method}.jsonl").write_text(text)
    return home
