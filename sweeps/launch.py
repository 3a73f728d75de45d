"""Launch, resume and inspect sweeps: validation before any trial, the retain reference and the
target's utility computed once, one Ray Tune experiment and one Optuna study per method."""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import logging
import os
import socket
from pathlib import Path

import torch
from ray.tune import Stopper

from search_spaces._common import default_point
from sweeps import experiment as folder
from sweeps import together
from sweeps.cluster import check_loopback, private_cluster_settings
from sweeps.config import SweepConfig, sweep_from_dict, to_dict
from sweeps.experiment import LOCK, journal, journal_path, read_manifest, study_name
from sweeps.fit import check_fits
from sweeps.interrupt import Interrupted, fit
from sweeps.lock import experiment_lock
from sweeps.objectives import get_objectives
from sweeps.relocate import EXPERIMENT_ENV, digest, drive, relative
from unlearn_core.benchmarks import write_json
from unlearn_core.errors import UserError
from unlearn_core.job import job_context
from unlearn_core.version import VERSION

log = logging.getLogger(__name__)


def check_address(address: str | None) -> None:
    """Fail fast on an unreachable cluster instead of Ray's long retry loop."""
    if address is None or address in ("auto", "local"):
        return
    if address.startswith("ray://"):
        # Ray Client would run the tuning loop on the head node, whose callbacks then write the
        # experiment folder there, not here: the driver runs beside the cluster instead
        raise UserError(
            f"--address {address}: Ray Client (ray://) is not supported; run the sweep on the "
            "head node (ray job submit -- unlearn-sweep sweep ... --address auto)"
        )
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=3):
            pass
    except (OSError, ValueError):
        raise UserError(
            f"cannot reach a Ray cluster at {address!r}; give host:port of a "
            "running head node (ray start --head) or 'auto'"
        ) from None


def check_storage(storage: str | None, flag: str = "storage") -> None:
    if storage is None:
        return
    if "://" in storage:
        import pyarrow.fs

        try:
            pyarrow.fs.FileSystem.from_uri(storage)
        except Exception as e:  # pyarrow raises several types for bad URIs
            raise UserError(f"storage {storage!r} is not usable: {str(e).splitlines()[0]}") from e
        return
    path = Path(storage).expanduser().absolute()
    created = [p for p in (path, *path.parents) if not p.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".unlearn_sweep_write_test"
        probe.write_text("ok")
        probe.unlink()
    except FileExistsError:
        raise UserError(f"{flag} {storage!r} is a file, not a folder") from None
    except OSError as e:
        raise UserError(f"{flag} {storage!r} is not writable: {e.strerror}") from None
    finally:  # a probe only: leave no folder behind
        for p in created:
            if p.is_dir():
                p.rmdir()


def reference_and_target(cfg: SweepConfig, home: Path) -> tuple[dict, float]:
    """The retain reference's JSON (once per sweep) and the target model's utility, saved in the
    folder. They are computed in a Ray task with a trial's resources (on a GPU-less head node an
    8B evaluation would otherwise run on its CPU); the driver writes what it returns, and the
    trials get the reference from Ray's object store (run_method), never from this folder."""
    import ray

    bench = (cfg.source.benchmark, cfg.source.split)
    ref_path = folder.reference_path(home, *bench)
    target_path = folder.model_metrics_path(home, "target", *bench)
    if ref_path.is_file() and target_path.is_file():
        utility = json.loads(target_path.read_text())["model_utility"]
        return json.loads(ref_path.read_text()), utility
    # one worker's resources: a trial of k workers of one GPU each evaluates on one GPU here
    task = ray.remote(
        num_cpus=cfg.cpus_per_trial, num_gpus=min(cfg.gpus_per_trial, 1.0), max_retries=0
    )
    try:
        done = ray.get(task(model_points).remote(to_dict(cfg)))
    except ray.exceptions.RayTaskError as e:  # the task's own error, as if raised here
        cause = e.cause if isinstance(e.cause, Exception) else e
        raise cause from None
    write_json(ref_path, done["reference"])
    write_json(target_path, done["target"])
    if done["retain"] is not None:  # the retain model's own point (forget_quality 1), for plots
        write_json(folder.model_metrics_path(home, "retain", *bench), done["retain"])
    # as a later call reads it back (write_json's plain JSON: tuples become lists)
    return json.loads(ref_path.read_text()), done["target"]["model_utility"]


def model_points(sweep: dict) -> dict:
    """What `reference_and_target` saves, computed where Ray runs it: the retain reference, the
    target model's metrics, and the retain model's (None without one)."""
    from sweeps.config import make_job
    from unlearn_core.models import ModelConfig, load_model

    cfg = sweep_from_dict(sweep)
    probe = make_job(cfg, default_point(cfg.resolved_preset()), cfg.seed, None)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    ctx = job_context(probe, ("forget",), device)

    def metrics_of(model: torch.nn.Module) -> dict:
        model.eval()
        suite = ctx.setup.suite
        return suite.aggregate(
            suite.per_sample(model, ctx.tok, ctx.setup, ctx.data, probe.eval), ctx.reference
        )

    retain = ctx.setup.retain_model
    return {
        "reference": ctx.reference.to_json(),
        "target": metrics_of(load_model(ctx.model, device)),
        "retain": metrics_of(load_model(ModelConfig(retain), device)) if retain else None,
    }


def defaults_point(cfg: SweepConfig) -> dict:
    """The method's cited reference point (search_spaces.reference_point), minus fixed values."""
    return cfg.defaults_point()


def new_manifest(home: Path, cfgs: list[SweepConfig], name: str) -> dict:
    return {
        "tool": "unlearn-sweep",
        "version": VERSION,
        "name": name,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "sweeps": [to_dict(c) for c in cfgs],
        # the point each study evaluates first, so analysis can mark it
        "defaults": {c.method: defaults_point(c) for c in cfgs},
    }


def prepare_home(home: Path, cfgs: list[SweepConfig], name: str) -> None:
    """Refuse to mix a different configuration into an existing experiment; write the manifest."""
    manifest = new_manifest(home, cfgs, name)
    if folder.manifest_path(home).exists():
        old = read_manifest(home)
        if old["sweeps"] != manifest["sweeps"]:
            raise UserError(
                f"experiment {home} exists with a different configuration; choose "
                "another --name, or `unlearn-sweep resume` it"
            )
        raise UserError(f"experiment {home} exists; continue it with `unlearn-sweep resume {home}`")
    if home.exists() and any(p.name != LOCK for p in home.iterdir()):
        raise UserError(
            f"{home} exists and is not an unlearn-sweep experiment; choose another --name"
        )
    home.mkdir(parents=True, exist_ok=True)
    write_manifest(home, manifest)


def write_manifest(home: Path, manifest: dict) -> None:
    """The manifest, and its sweeps as YAML for people."""
    import yaml

    write_json(folder.manifest_path(home), manifest)
    folder.sweep_yaml_path(home).write_text(
        yaml.safe_dump({"name": manifest["name"], "sweeps": manifest["sweeps"]}, sort_keys=False)
    )


def env_for_workers() -> dict[str, str]:
    keys = (
        EXPERIMENT_ENV,
        "UNLEARN_SWEEP_CACHE",
        "HF_HUB_OFFLINE",
        "HF_HOME",
        "TRANSFORMERS_OFFLINE",
        "HF_DATASETS_OFFLINE",
        "UNLEARN_SWEEP_FAULTS",
        "OMP_NUM_THREADS",
    )
    return {k: os.environ[k] for k in keys if k in os.environ}


_started_with: list[dict[str, str]] = []  # the worker environment Ray was started with


def init_ray(address: str | None, dashboard: bool = False) -> None:
    """Ray for this driver: the private loopback cluster (address None), with Ray's dashboard on
    127.0.0.1 if asked, or the running cluster at `address`."""
    import ray

    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    # a trial's failure (a full disk) is Tune's to record and retry, not a traceback on the console
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "0")
    # a diverged trial's last report carries its cause and no objectives (never invented values)
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    # Save the experiment state at most once a second (Ray's own default waits >= 10 s). At every
    # step (0) the driver spent half a core on it while its trials ran (Ray steps every 0.1 s):
    # make demo took 608 s instead of 547. A driver killed within that second resumes from the
    # state before: the trials it names are restored from a kept checkpoint and re-report, and
    # the analysis keeps one row per (trial, epoch) (a stale restore, covered by the tests).
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "1")
    env = env_for_workers()
    if ray.is_initialized() and _started_with == [env | {"dashboard": str(dashboard)}]:
        return
    if ray.is_initialized():  # another experiment in this process: its trials need its folder
        ray.shutdown()
    _started_with[:] = [env | {"dashboard": str(dashboard)}]
    if address is None:  # a private cluster: loopback only, with a token (sweeps/cluster.py)
        private_cluster_settings()
    try:
        ray.init(
            # "local": a new private cluster, never one Ray would find on its own (RAY_ADDRESS, or
            # the last cluster started on this machine, which another sweep's can be)
            address=address or "local",
            include_dashboard=dashboard,
            dashboard_host="127.0.0.1",
            log_to_driver=False,
            configure_logging=True,
            logging_level=logging.ERROR,
            runtime_env={"env_vars": env},
        )
    except RuntimeError as e:  # Ray's own check of a running cluster's Ray and Python versions
        if address is None or not str(e).startswith("Version mismatch"):
            raise
        ray.shutdown()
        _started_with.clear()
        raise UserError(
            f"--address {address}: {' '.join(str(e).split())}; run the driver with the "
            "cluster's Ray and Python versions"
        ) from None
    if address is None:
        check_loopback()


def slots(cfg: SweepConfig) -> int:
    """Concurrent trials: the user's cap, else what the cluster's CPUs and GPUs fit."""
    import ray

    res = ray.cluster_resources()
    gpus = res.get("GPU", 0.0)
    if cfg.gpus_per_trial > gpus:
        raise UserError(f"--gpus-per-trial {cfg.gpus_per_trial} but the cluster has {gpus:g} GPUs")
    # k workers take cpus_per_trial CPUs each (sweeps/workers.py)
    cpus = cfg.cpus_per_trial * cfg.workers()
    if cpus > res.get("CPU", 0.0):
        per = f" x {cfg.workers()} workers" if cfg.workers() > 1 else ""
        raise UserError(
            f"--cpus-per-trial {cfg.cpus_per_trial}{per} but the cluster has "
            f"{res.get('CPU', 0):g} CPUs"
        )
    fit = int(res.get("CPU", 1) // cpus + 1e-9)
    if cfg.gpus_per_trial > 0:
        fit = min(fit, int(gpus // cfg.gpus_per_trial + 1e-9))
    return max(1, min(fit, cfg.max_concurrent or fit, cfg.trials))


def warn_unshared(storage_path: str) -> None:
    """A running cluster of several nodes, and Ray's storage in the experiment folder: a trial on
    another node saves its checkpoints on that node's disk unless the folder is on a shared one,
    where neither the driver nor a retry elsewhere finds them (Ray syncs nothing since 2.7)."""
    import ray

    nodes = sum(1 for n in ray.nodes() if n["Alive"])
    if nodes > 1:
        log.warning(
            "the cluster has %d nodes and no --storage was given: trials save checkpoints under "
            "%s on the node they run on; unless that is a shared disk, give --storage on shared "
            "or cloud storage (s3://, gs://)",
            nodes,
            storage_path,
        )


def run_method(cfg: SweepConfig, home: Path, total: int | None = None) -> None:
    """One Ray Tune experiment + one Optuna study for cfg.method; restores if it was started.
    `total` (resume --trials): the trials the study is to have from now on, for the manifest."""
    from ray import tune

    from sweeps.trainable import trainable
    from sweeps.workers import trial_resources

    storage_path = (
        str(Path(cfg.storage).expanduser().absolute())
        if cfg.storage and "://" not in cfg.storage
        else (cfg.storage or str(folder.ray_path(home)))
    )
    exp_dir = f"{storage_path.rstrip('/')}/{cfg.method}"
    if cfg.address is not None and cfg.storage is None:
        warn_unshared(storage_path)
    fn = tune.with_resources(trainable, trial_resources(cfg))
    reference, target_utility = reference_and_target(cfg, home)  # computed once, then read
    # The reference reaches every trial through Ray's object store, so no trial opens the
    # experiment folder: on a cluster without a shared disk only the driver sees it. Wrapped
    # again on every restore (a Tuner's object refs end with its driver).
    fn = tune.with_parameters(fn, reference=reference)
    floor = cfg.utility_floor * target_utility
    constants = {
        "sweep": to_dict(cfg),
        # names the reference the trials get (the key also keeps older experiments restorable:
        # Ray checks a restored param_space's keys, and theirs held its path here)
        "reference": digest(reference),
        "utility_floor": floor,
    }
    repair(cfg, home, exp_dir)
    restore = tune.Tuner.can_restore(exp_dir)
    extend = total is not None and total != cfg.trials  # resume --trials N
    if restore and not (extend and total < cfg.trials):
        # the constants are passed again: trials the restored searcher creates need them
        tuner = tune.Tuner.restore(
            exp_dir,
            trainable=fn,
            resume_unfinished=True,
            resume_errored=False,
            param_space=constants,
        )
        if fit(tuner):  # interrupted trials stay RUNNING: `resume` ends them
            raise Interrupted(home)
    if extend:
        # Ray's state starts no trial past the total it was made for: after it finished its own
        # (or, for fewer trials, instead of it: its unfinished ones run again from the start), a
        # new Tuner runs what the journal says is missing. The manifest names the new total from
        # here on, so a plain `resume` of this Tuner's state continues it.
        set_trials(home, cfg.method, total)
        cfg = dataclasses.replace(cfg, trials=total)
        constants["sweep"] = to_dict(cfg)
    if extend or not restore:
        tuner = new_tuner(cfg, home, fn, constants, storage_path, floor)
        if tuner is not None and fit(tuner):
            raise Interrupted(home)
    reconcile(home, cfg.method)


def repair(cfg: SweepConfig, home: Path, exp_dir: str) -> None:
    """Mend what an interrupted driver can leave cut off (the journal's last line, Ray's state
    files) before anything reads them; refuse, naming it, what cannot be mended."""
    from sweeps.callbacks import _readable, check_checkpoints, repair_state
    from sweeps.search import repair_journal

    if repair_journal(journal_path(home, cfg.method)):  # the journal is always in the folder
        log.warning(
            "the Optuna journal's last line was cut off by the interruption; removed it "
            "(kept in %s.cut)",
            journal_path(home, cfg.method).name,
        )
    if "://" in exp_dir or not Path(exp_dir).is_dir():
        return
    for name in repair_state(Path(exp_dir)):
        log.warning("%s was cut off by the interruption; restored its last complete copy", name)
    broken = [p.name for p in Path(exp_dir).glob("experiment_state-*.json") if not _readable(p)]
    if broken:
        raise UserError(
            f"{exp_dir}/{broken[0]} is corrupted and has no complete backup; "
            "the finished trials stay in the study and results, start a new sweep"
        )
    check_checkpoints(Path(exp_dir))


def set_trials(home: Path, method: str, trials: int) -> None:
    """`resume --trials`: the manifest's trials of `method`, what a later resume compares."""
    manifest = read_manifest(home)
    for sweep in manifest["sweeps"]:
        if sweep["method"] == method:
            sweep["trials"] = trials
    write_manifest(home, manifest)


def new_tuner(cfg: SweepConfig, home: Path, fn, constants: dict, storage_path: str, floor: float):
    """A Tuner for the trials the study still lacks (None: it has them all); without Ray's state
    (a new sweep, its folder gone, or `resume --trials`) the journal says what is left. A new
    study evaluates the reference defaults first, then the warm start's front (sweeps/warm.py)."""
    from ray import tune

    from sweeps.callbacks import DriverMemory, Progress, ResultsLog, StateBackup
    from sweeps.search import (
        MovableGenerator,
        budget_of,
        make_searcher,
        searcher_journal,
        trials_left,
    )

    storage = searcher_journal(home, journal_path(home, cfg.method))
    left, existing = trials_left(storage, study_name(cfg.method), cfg.trials)
    if left == 0:
        return None
    warm = []
    if cfg.warm_start is not None and not existing:
        from sweeps.warm import warm_points

        warm, notes = warm_points(cfg, home)
        for line in notes:
            log.warning("%s", line)
    objectives = get_objectives(list(cfg.objectives))
    keys, modes = [o.key for o in objectives], [o.mode for o in objectives]
    searcher = make_searcher(
        cfg.method,
        cfg.sampler,
        cfg.seed + existing,  # a sampler seeded as before would suggest the same values
        cfg.space_options(),
        keys,
        modes,
        storage,
        study_name(cfg.method),
        defaults_point(cfg),
        defaults_first=not existing,  # a continued study evaluated them first already
        budget=budget_of(cfg.method, cfg.space_options(), cfg.trials, cfg.eval_every),
        warm=warm,
    )
    local = "://" not in storage_path
    stored_inside = relative(home, storage_path) if local else None
    if stored_inside is not None and Path(stored_inside).is_absolute():
        stored_inside = None  # a --storage outside the experiment stays where it is
    callbacks = [
        ResultsLog(relative(home, folder.results_path(home, cfg.method)), cfg.method),
        Progress(cfg.method, cfg.trials, tuple(zip(keys, modes, strict=True))),
        DriverMemory(relative(home, folder.driver_memory_path(home)), cfg.method),
    ]
    callbacks += logger_callbacks(cfg, home)
    if local:
        callbacks.append(StateBackup(relative(home, f"{storage_path.rstrip('/')}/{cfg.method}")))
    return tune.Tuner(
        fn,
        param_space=constants,
        tune_config=tune.TuneConfig(
            # Tune's own wrapping for max_concurrent_trials, movable (sweeps/search.py)
            search_alg=MovableGenerator(searcher, slots(cfg), stored_inside),
            num_samples=left,
            # studies run together share the cluster: an actor one keeps for its next trial
            # would hold a slot the gate gave another (sweeps/together.py)
            reuse_actors=cfg.gpus_per_trial == 0 and not together.running(),
        ),
        run_config=tune.RunConfig(
            name=cfg.method,
            storage_path=storage_path,
            verbose=0,
            stop=UtilityFloor(floor, cfg.floor_patience) if cfg.utility_floor > 0 else None,
            failure_config=tune.FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=tune.CheckpointConfig(num_to_keep=cfg.keep_checkpoints),
            callbacks=callbacks,
        ),
    )


def logger_callbacks(cfg: SweepConfig, home: Path) -> list:
    """Ray's own logger callbacks for --log-to (preflight.check_watching checked the packages):
    one wandb run or mlflow run per trial, grouped by the experiment and method."""
    out = []
    for name in (cfg.log_to or "").split(","):
        if name == "wandb":
            from ray.air.integrations.wandb import WandbLoggerCallback

            out.append(WandbLoggerCallback(project=home.name, group=cfg.method))
        elif name == "mlflow":
            from ray.air.integrations.mlflow import MLflowLoggerCallback

            uri = os.environ.get("MLFLOW_TRACKING_URI") or (home / "mlruns").absolute().as_uri()
            out.append(
                MLflowLoggerCallback(tracking_uri=uri, experiment_name=f"{home.name}-{cfg.method}")
            )
    return out


class UtilityFloor(Stopper):
    """Ray stopper: end a trial whose model_utility stayed below the floor for `patience`
    evaluations in a row (the searcher records it as infeasible through the constraint the
    trainable reports). Patience > 1 spares trials that dip for an epoch and recover."""

    def __init__(self, floor: float, patience: int = 1) -> None:
        self.floor = floor
        self.patience = patience
        self.below: dict[str, int] = {}

    def __call__(self, trial_id: str, result: dict) -> bool:
        # Ray hands stoppers the report nested: its sections (sweeps/rows.py)
        utility = result.get("metrics", {}).get("model_utility")
        if utility is None:
            return False
        low = utility < self.floor
        self.below[trial_id] = self.below.get(trial_id, 0) + 1 if low else 0
        return self.below[trial_id] >= self.patience

    def stop_all(self) -> bool:
        return False


def reconcile(home: Path, method: str) -> int:
    """After a sweep ends, no Optuna trial may stay RUNNING: mark leftovers FAIL with the cause."""
    import optuna
    from optuna.trial import TrialState

    storage = journal(journal_path(home, method))
    study = optuna.load_study(study_name=study_name(method), storage=storage)
    fixed = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_user_attr(t._trial_id, "failure", "lost: the driver stopped mid-trial")
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        fixed += 1
    return fixed


def run_methods(cfgs: list[SweepConfig], home: Path, total: int | None = None) -> None:
    """One method: its study, in this thread. Several: their studies at once, in threads of this
    driver, at most what one sweep of all their trials would run at once (--max-concurrent, else
    what fits) across them (sweeps/together.py); the retain reference and the target's metrics,
    which they share, computed first."""
    if len(cfgs) == 1:
        run_method(cfgs[0], home, total)
        return
    for cfg in {(c.source.benchmark, c.source.split): c for c in cfgs}.values():
        reference_and_target(cfg, home)
    whole = dataclasses.replace(cfgs[0], trials=sum(total or c.trials for c in cfgs))
    studies = {c.method: functools.partial(run_method, c, home, total) for c in cfgs}
    if together.run_together(studies, slots(whole)):  # Ctrl-C: every study stopped, its state saved
        raise Interrupted(home)


def run_sweep(cfgs: list[SweepConfig], home: Path, name: str) -> Path:
    """Validate everything, write the manifest, then run one study per method, all at once."""
    first = cfgs[0]
    check_address(first.address)
    check_storage(first.storage or str(home.parent), "storage" if first.storage else "--output")
    if home.exists() and not home.is_dir():
        raise UserError(f"experiment path {home} is a file; choose another --name or --output")
    if folder.manifest_path(home).exists() or (home.exists() and any(home.iterdir())):
        prepare_home(home, cfgs, name)  # refuses, naming why, before Ray starts
    drive(home)
    init_ray(first.address, first.dashboard)
    for cfg in cfgs:
        slots(cfg)  # GPUs/CPUs per trial against the cluster, before anything is written
    check_fits(cfgs)  # and each GPU trial's memory (plan's estimate) against its GPUs
    home.mkdir(parents=True, exist_ok=True)
    with experiment_lock(home):  # a second sweep of the same name waits for nothing: refused
        prepare_home(home, cfgs, name)
        run_methods(cfgs, home)
    return home


def resume_sweep(home: Path, trials: int | None = None) -> Path:
    """Continue the experiment; `trials` (resume --trials, checked by preflight.check_resume): the
    total each study extends (or, interrupted, shrinks) to."""
    from sweeps.experiment import load_study

    manifest = read_manifest(home)
    try:
        cfgs = [sweep_from_dict(d) for d in manifest["sweeps"]]
    except (UserError, TypeError, KeyError) as e:
        raise UserError(f"{folder.manifest_path(home)} holds an invalid sweep: {e}") from None
    with experiment_lock(home):  # one driver per experiment, before anything is repaired
        for cfg in cfgs:  # before Ray starts: a corrupted journal gets one line, not a traceback
            if journal_path(home, cfg.method).is_file():
                load_study(home, cfg.method)
        check_address(cfgs[0].address)
        drive(home)
        init_ray(cfgs[0].address, cfgs[0].dashboard)
        run_methods(cfgs, home, trials)
    return home
