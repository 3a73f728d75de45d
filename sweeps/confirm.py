"""`unlearn-sweep confirm`: the winner's curse. A sweep measures each configuration on one seed,
and at a fixed configuration forget quality varies by orders of magnitude across training seeds,
so the best point it reports is partly the luckiest seed. Confirm reruns the few points that
matter (each method's K front points closest to the knee, and its exported point) on fresh
seeds, as Ray trials of the sweep's own trainable on the same cluster, and records mean, std and
a 95% interval per objective and metric in HOME/confirmed.json (analysis/confirmed.py)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from analysis import confirmed
from analysis.export import knee_order
from analysis.files import write_text
from analysis.load import load, metric_columns, objective_keys, open_experiment, params_of
from sweeps import experiment as folder
from sweeps.config import SweepConfig, sweep_from_dict, to_dict
from sweeps.rows import SECTIONS
from unlearn_core.errors import UserError

log = logging.getLogger(__name__)

TOP = 3  # front points per method closest to the knee
SEEDS = 3  # fresh seeds per point


def fresh_seeds(cfg: SweepConfig, n: int) -> list[int]:
    """The first n fresh seeds of a point: cfg.seed + SEED_OFFSET + j (the sweep ran cfg.seed + i,
    i < cfg.seeds), the same on every rerun, so a rerun with more seeds only adds the new ones."""
    return [cfg.seed + confirmed.SEED_OFFSET + j for j in range(n)]


def confirm(
    home: str | Path, top: int = TOP, seeds: int = SEEDS, points: list[dict] | None = None
) -> Path:
    """Rerun points of the experiment at `home` on `seeds` fresh seeds and return the path of the
    record (HOME/confirmed.json). points=None: per method the `top` front points closest to the
    knee plus the exported point (best/<method>.json); else exactly these, each a dict
    {"method", "trial" (Ray trial id), "epoch"} naming an evaluated epoch of the experiment.
    Seeds a point already has in the record are not rerun; the record keeps every earlier point.
    Bad input: one-line UserError before anything is written."""
    from sweeps.launch import check_address, init_ray, slots
    from sweeps.lock import experiment_lock
    from sweeps.relocate import drive

    home = Path(home).expanduser().absolute()
    cfgs, chosen, work = _plan(home, top, seeds, points)
    path = folder.confirmed_path(home)
    if not any(work.values()):
        log.warning("every point already has %d fresh seeds in %s", seeds, path)
        return path
    first = cfgs[next(m for m, w in work.items() if w)]
    check_address(first.address)
    drive(home)
    init_ray(first.address)
    for m, todo in work.items():
        if todo:
            slots(replace(cfgs[m], trials=len(todo)))  # resources against the cluster, first
    with experiment_lock(home):  # the one driver of the folder: no sweep writes beside us
        for m, todo in work.items():
            runs, interrupted = _run(cfgs[m], home, todo) if todo else ([], False)
            record = confirmed.merged(confirmed.read(home), m, chosen[m], runs)
            try:
                write_text(path, json.dumps(record, indent=2) + "\n")
            except OSError as e:
                raise UserError(
                    f"cannot write {path} ({e.strerror or e}); the sweep's files are unchanged: "
                    "free space or fix the permission and run confirm again"
                ) from None
            if interrupted:  # what finished is recorded; a rerun adds the rest
                raise KeyboardInterrupt
    return path


def _plan(home: Path, top: int, seeds: int, points: list[dict] | None) -> tuple:
    """Everything checked before Ray starts or anything is written: (the sweeps' configs, the
    points per method, the (point, seed) pairs per method not yet in the record)."""
    if top < 1 or seeds < 1:
        raise UserError(f"--top and --seeds must be >= 1, got --top {top} --seeds {seeds}")
    exp = open_experiment(home)
    cfgs = {m: sweep_from_dict(d, f"{home}: sweep {m}") for m, d in exp.sweeps.items()}
    if any(c.seeds > confirmed.SEED_OFFSET for c in cfgs.values()):
        raise UserError(f"confirm's fresh seeds start {confirmed.SEED_OFFSET} after the sweep's")
    methods = [m for m in cfgs if _completed(home, m)]
    if not methods:
        raise UserError(f"{home} has no completed trial yet: nothing to confirm")
    rows, _ = load([home])
    chosen = _given(exp, rows, points) if points is not None else _chosen(exp, rows, methods, top)
    if not any(chosen.values()):
        raise UserError(f"{home} has no feasible evaluated epoch (all below the utility floor)")
    record = confirmed.read(home)
    work = {
        m: [
            (p, s)
            for p in pts
            for s in fresh_seeds(cfgs[m], seeds)
            if s not in confirmed.seen(record, m, p)
        ]
        for m, pts in chosen.items()
    }
    return cfgs, chosen, work


def _completed(home: Path, method: str) -> bool:
    """The method's study holds a completed trial of the budget (not an epoch point)."""
    from optuna.trial import TrialState

    from sweeps.search import is_epoch_point

    study = folder.load_study(home, method)
    return study is not None and any(
        t.state == TrialState.COMPLETE and not is_epoch_point(t)
        for t in study.get_trials(deepcopy=False)
    )


def _point(row: pd.Series, part: pd.DataFrame, keys: list[str], why: str) -> confirmed.Point:
    from analysis.export import _plain

    metrics = [c for c in metric_columns(part) if c not in keys and pd.notna(row[c])]
    return confirmed.Point(
        str(row["method"]),
        str(row["trial_id"]),
        int(row["epoch"]),
        {k: _plain(v) for k, v in params_of(row).items()},
        (why,),
        {
            "objectives": {k: float(row[k]) for k in keys},
            "metrics": {c: float(row[c]) for c in metrics},
        },
    )


def _chosen(
    exp, rows: pd.DataFrame, methods: list[str], top: int
) -> dict[str, list[confirmed.Point]]:
    """Per method: the `top` front points closest to the knee (export's knee rule, the same
    order), then the exported point if `export` wrote one and it is not among them."""
    out = {}
    for m in methods:
        part = rows[rows["method"] == m]
        keys, dirs = objective_keys(exp.sweeps[m])
        ranked = knee_order(part, keys, dirs).head(top)
        pts = [
            _point(r, part, keys, f"knee #{i + 1}") for i, (_, r) in enumerate(ranked.iterrows())
        ]
        exported = _exported(exp.home, m)
        if exported is not None:
            at = _row(part, *exported)
            if at is None:
                log.warning(
                    "%s: the exported trial %s epoch %s is not in the results", m, *exported
                )
            elif (exported[0], exported[1]) in {(p.trial, p.epoch) for p in pts}:
                pts = [
                    replace(p, why=(*p.why, "exported")) if (p.trial, p.epoch) == exported else p
                    for p in pts
                ]
            else:
                pts.append(_point(at, part, keys, "exported"))
        out[m] = pts
    return out


def _exported(home: Path, method: str) -> tuple[str, int] | None:
    """(trial, epoch) of best/<method>.json, as `export` wrote it; None without one."""
    path = folder.best_path(home, method, ".json")
    if not path.is_file():
        return None
    try:
        info = json.loads(path.read_text(encoding="utf-8"))["info"]
        return str(info["trial"]), int(info["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("%s is not an export; its point is not confirmed", path)
        return None


def _row(part: pd.DataFrame, trial: str, epoch: int) -> pd.Series | None:
    at = part[(part["trial_id"] == trial) & (part["epoch"] == epoch)]
    at = at[at["status"].isin(["complete", "stopped"])]
    return None if at.empty else at.iloc[0]


def _given(exp, rows: pd.DataFrame, points: list[dict]) -> dict[str, list[confirmed.Point]]:
    """Explicit points ({"method", "trial", "epoch"}), each an evaluated epoch of the experiment."""
    out: dict[str, list[confirmed.Point]] = {}
    for p in points:
        if not isinstance(p, dict) or set(p) != {"method", "trial", "epoch"}:
            raise UserError(f"a point is {{'method', 'trial', 'epoch'}}, got {p!r}")
        part = rows[rows["method"] == p["method"]]
        at = _row(part, str(p["trial"]), int(p["epoch"]))
        if p["method"] not in exp.sweeps or at is None:
            raise UserError(
                f"{exp.home} has no evaluated epoch {p['epoch']} of {p['method']} "
                f"trial {p['trial']}"
            )
        keys, _ = objective_keys(exp.sweeps[p["method"]])
        mine = out.setdefault(p["method"], [])
        if all((q.trial, q.epoch) != (str(p["trial"]), int(p["epoch"])) for q in mine):
            mine.append(_point(at, part, keys, "given"))  # a point given twice runs once
    return out


def _run(
    cfg: SweepConfig, home: Path, todo: list[tuple[confirmed.Point, int]]
) -> tuple[list, bool]:
    """One Ray Tune experiment of fixed configs (one trial per point and seed) through the sweep's
    trainable, with its resources, retries and storage; returns ([(point, run)], interrupted).
    A trial that errored is left out (a rerun tries it again); a diverged one is recorded."""
    from ray import tune

    from sweeps.interrupt import fit
    from sweeps.launch import reference_and_target, slots
    from sweeps.relocate import digest
    from sweeps.workers import trial_resources

    reference, target_utility = reference_and_target(cfg, home)
    configs = [
        {
            **p.params,
            "sweep": to_dict(replace(cfg, seed=seed, seeds=1)),  # one fresh seed per trial
            "reference": digest(reference),  # the trials get it from Ray's object store
            "utility_floor": cfg.utility_floor * target_utility,  # reported, never stopped at
            "stop_after": p.epoch,
        }
        for p, seed in todo
    ]
    storage = (  # as the sweep's own trials (sweeps/launch.py run_method)
        str(Path(cfg.storage).expanduser().absolute())
        if cfg.storage and "://" not in cfg.storage
        else (cfg.storage or str(folder.confirm_storage(home)))
    )
    name = f"{cfg.method}-{time.strftime('%Y%m%d-%H%M%S')}"  # never restored: a fresh experiment
    fn = tune.with_resources(
        tune.with_parameters(_confirm_trial, configs=configs, reference=reference),
        trial_resources(cfg),
    )
    tuner = tune.Tuner(
        fn,
        param_space={"index": tune.grid_search(list(range(len(configs))))},
        tune_config=tune.TuneConfig(
            max_concurrent_trials=slots(replace(cfg, trials=len(configs))),
            reuse_actors=cfg.gpus_per_trial == 0,
        ),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage,
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
        ),
    )
    interrupted = fit(tuner)
    out = []
    for result in tuner.get_results():
        p, seed = todo[result.config["index"]]
        if result.error is not None:
            log.warning(
                "%s trial %s epoch %d seed %d failed: %s",
                cfg.method,
                p.trial,
                p.epoch,
                seed,
                result.error,
            )
            continue
        out.append((p, _run_record(seed, p.epoch, result.metrics or {})))
    if "://" not in storage:  # the record holds what the trials measured
        shutil.rmtree(Path(storage) / name, ignore_errors=True)
    if cfg.storage is None:
        with contextlib.suppress(OSError):  # confirm's folder, when no other run is in it
            folder.confirm_storage(home).rmdir()
    return out, interrupted


def _confirm_trial(config: dict, configs: list[dict], reference: dict) -> None:
    """The sweep's trainable on the config of this trial's index."""
    from sweeps.trainable import trainable

    trainable(configs[config["index"]], reference)


def _sections(result: dict) -> dict:
    """A trial's last result in its sections (Ray may hand it flattened as "<section>/<key>")."""
    if any(s in result for s in SECTIONS):
        return result
    out: dict = {}
    for k, v in result.items():
        section, _, key = k.partition("/")
        if key and section in SECTIONS:
            out.setdefault(section, {})[key] = v
    return out


def _run_record(seed: int, epoch: int, result: dict) -> dict:
    r = _sections(result)
    run = r.get("run", {})
    if run.get("diverged") or "objectives" not in r:
        return {"seed": seed, "failure": str(run.get("failure", "no objectives reported"))}
    assert int(run["epoch"]) == epoch, f"trial stopped at epoch {run['epoch']}, not {epoch}"
    finite = {k: float(v) for k, v in r.get("metrics", {}).items() if math.isfinite(v)}
    return {
        "seed": seed,
        "objectives": {k: float(v) for k, v in r["objectives"].items()},
        "metrics": finite,
        "optimizer_steps": run.get("optimizer_steps"),
    }
