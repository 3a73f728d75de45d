"""One validation pass before Ray starts and before anything is written: every value a sweep could
hand a trial goes through the trial's own construction (make_job: TrainConfig, the method's
Hparams), so a sweep that can only fail is refused in one line instead of started."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from pathlib import Path

from search_spaces import SPACES
from search_spaces._common import SpaceOptions
from sweeps.config import SweepConfig, make_job, sweep_from_dict
from unlearn_core.config import check_fields
from unlearn_core.errors import UserError
from unlearn_core.paths import check_paths, check_remote_code
from unlearn_core.source import Source
from unlearn_core.train import SEED_MAX

NO_REMOTE_CODE = "sweeps never run a model's own code: convert it to a transformers class first"


def check_sweep(cfgs: list[SweepConfig], name: str, home: Path) -> None:
    """Refuse, naming the value, anything a trial of these sweeps would refuse later."""
    check_name(name)
    for cfg in cfgs:
        options = dataclasses.asdict(cfg)
        source = options.pop("source")
        source.pop("prompt")  # a PromptFormat, checked where it is built
        check_fields(options, SweepConfig, "sweep option")
        check_fields(source, Source, "sweep option")
        check_resources(cfg)
        check_seeds(cfg)
        check_values(cfg)
        check_watching(cfg)
        if cfg.warm_start is not None:  # the earlier front, read now: a refusal writes nothing
            from sweeps.warm import warm_points

            warm_points(cfg, home)


def check_watching(cfg: SweepConfig) -> None:
    """--log-to needs its package in the driver, --liger GPUs and liger-kernel, and --dashboard
    Ray's dashboard packages and a cluster this driver starts (a running cluster's dashboard is
    `ray start`'s to set)."""
    for name in (cfg.log_to or "").split(","):
        if name and importlib.util.find_spec(name) is None:
            extra = {"wandb": "wandb", "mlflow": "mlflow-skinny"}[name]
            raise UserError(
                f"--log-to {name} needs the {name} package in this environment: "
                f"pip install {extra} (or unlearn-sweep[{name}])"
            )
    if cfg.liger and cfg.gpus_per_trial == 0:
        raise UserError("--liger runs Triton kernels on CUDA GPUs only: give --gpus-per-trial")
    if cfg.liger and importlib.util.find_spec("liger_kernel") is None:
        raise UserError(
            "--liger needs the liger-kernel package in this environment: pip install "
            "'unlearn-sweep[liger]' (or leave --liger off)"
        )
    if not cfg.dashboard:
        return
    if cfg.address is not None:
        raise UserError(
            "--dashboard starts the dashboard of the cluster a sweep starts itself; a running "
            "cluster has its own (ray start --head --include-dashboard true)"
        )
    from ray._private.utils import get_dashboard_dependency_error

    if get_dashboard_dependency_error() is not None:
        raise UserError(
            "--dashboard needs Ray's dashboard packages: pip install 'ray[default]' "
            "(or unlearn-sweep[dashboard])"
        )


def check_name(name: str) -> None:
    """An experiment name is one plain folder name: printable, no separator, no newline."""
    if (
        not isinstance(name, str)
        or name in ("", ".", "..")
        or not name.isprintable()
        or any(sep in name for sep in ("/", "\\", os.sep))
        or name.startswith("-")
        or len(name.encode()) > 200
    ):
        raise UserError(
            f"experiment name {name!r} must be a plain folder name (printable, no '/', "
            "no newline, not starting with '-', at most 200 bytes)"
        )


def check_resources(cfg: SweepConfig) -> None:
    """Ray takes fractions of a CPU or GPU below 1 and whole numbers above (a NaN would wait for
    resources forever)."""
    for key, low in (("cpus_per_trial", "> 0"), ("gpus_per_trial", ">= 0")):
        value = getattr(cfg, key)
        if value > 1 and not float(value).is_integer():
            raise UserError(
                f"{key} must be a fraction below 1 or a whole number ({low}), got {value}"
            )


def check_seeds(cfg: SweepConfig) -> None:
    last = cfg.seed + cfg.seeds - 1
    if not (0 <= cfg.seed and last <= SEED_MAX):
        seeds = f"seed {cfg.seed}" if cfg.seeds == 1 else f"seeds {cfg.seed}..{last}"
        raise UserError(f"{seeds}: trial seeds must lie in 0..2**32-1 (numpy's, Optuna's limit)")


def _base_params(cfg: SweepConfig) -> dict:
    """One draw of the method's space with the user's fixed values and the default ranges."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize"], sampler=optuna.samplers.RandomSampler(0))
    opts = cfg.space_options()
    return SPACES[cfg.method](study.ask(), SpaceOptions(opts.preset, {}, opts.fixed))


def check_values(cfg: SweepConfig) -> None:
    """The fixed values, then both ends of every range, then the first and last seed, each
    through make_job; the first refusal names what the user gave."""
    base = _base_params(cfg)

    def job(params: dict, given: str, seed: int = cfg.seed):
        try:
            return make_job(cfg, params, seed, None)
        except UserError as e:
            raise UserError(f"{given}: {e}") from None

    fixed = " ".join(f"{k}={v!r}" for k, v in cfg.fixed.items())
    first = job(base, f"--fix {fixed}" if fixed else "the search space")  # the trial's own job
    for name, r in cfg.space_options().ranges.items():
        given = f"--space {name}={cfg.space[name]}"
        whole = isinstance(base.get(name), int) and not isinstance(base.get(name), bool)
        if whole and not (float(r.low).is_integer() and float(r.high).is_integer()):
            raise UserError(f"{given}: {name} is an integer; give whole-number bounds")
        for end in (r.low, r.high):
            job(base | {name: int(end) if whole else end}, f"{given} (value {end:g})")
    job(base, f"seed {cfg.seed + cfg.seeds - 1}", cfg.seed + cfg.seeds - 1)
    src = first.source
    check_paths(model=src.model, data=src.data, retain_model=src.retain_model)
    for path in (src.model, src.retain_model):
        if path is not None:
            check_remote_code(path, False, NO_REMOTE_CODE)
    if src.retain_logs is not None and not Path(src.retain_logs).expanduser().is_file():
        raise UserError(f"retain logs {src.retain_logs!r} is not a file")


def check_resume(home: Path, trials: int | None = None) -> None:
    """The experiment's own files a resume reads before Ray starts: the manifest, and the
    reference metrics it reuses instead of computing them again; with `trials` (resume
    --trials), that no study has run more."""
    import json

    from sweeps.experiment import read_manifest, references_path

    manifest = read_manifest(home)
    if trials is not None:
        check_total(home, manifest, trials)
    for doc in manifest.get("sweeps", [])[:1]:  # the options every method shares
        if isinstance(doc, dict) and (doc.get("log_to") or doc.get("dashboard")):
            check_watching(sweep_from_dict(doc))
    for path in sorted(references_path(home).glob("*.json")):
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            doc = None
        target = path.name.startswith("target-")
        if not isinstance(doc, dict) or (
            target and not isinstance(doc.get("model_utility"), float)
        ):
            raise UserError(f"{path} is damaged; remove it and `resume` computes it again")


def check_total(home: Path, manifest: dict, trials: int) -> None:
    """`resume --trials N`: N trials in all per method, not fewer than each study has run."""
    from sweeps.experiment import load_study
    from sweeps.warm import trials_run

    if trials < 1:
        raise UserError(f"resume --trials must be >= 1, got {trials}")
    for sweep in manifest["sweeps"]:
        run = trials_run(load_study(home, sweep["method"]))
        if trials < run:
            raise UserError(
                f"resume --trials {trials}: the {sweep['method']} study has run {run} trials "
                f"already; give at least {run}"
            )
