"""Warm start and extension of a study: the points `sweep --warm-start OTHER_DIR` evaluates first
(the earlier study's Pareto front, fitted into this sweep's space) and the trials a study has run,
below which `resume --trials N` refuses to go."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from search_spaces import SPACES
from sweeps.config import SweepConfig
from sweeps.experiment import load_study, read_manifest
from sweeps.search import EPOCH_OF, LOST, is_epoch_point
from unlearn_core.errors import UserError


def trials_run(study: optuna.Study | None) -> int:
    """Trials of the budget the study has started: finished ones (not those failed as lost, which
    run again) and interrupted ones (RUNNING: a resume finishes them). Epoch points are no
    trials of the budget (sweeps/search.py)."""
    if study is None:
        return 0
    return sum(
        not is_epoch_point(t)
        and (t.state == TrialState.RUNNING or t.state.is_finished())
        and not str(t.user_attrs.get("failure", "")).startswith(LOST)
        for t in study.get_trials(deepcopy=False)
    )


def space_distributions(cfg: SweepConfig) -> dict[str, optuna.distributions.BaseDistribution]:
    """What this sweep searches: one draw of the method's space with its options (the spaces'
    only conditions are on the preset, so one draw names every searched parameter); fixed values
    are returned by the space, never suggested, so they are not among them."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["maximize"], sampler=optuna.samplers.RandomSampler(0))
    trial = study.ask()
    SPACES[cfg.method](trial, cfg.space_options())
    return dict(trial.distributions)


def _front(cfg: SweepConfig, home: Path) -> tuple[Path, list[FrozenTrial], list[FrozenTrial]]:
    """The earlier study's front (best first by its first objective) and all its trials.

    Read from the Optuna study, not through `analysis`: analysis imports sweeps (the manifest,
    the objectives), so sweeps importing it would make the import graph two-way. With every
    evaluated epoch told to the study (EPOCH_OF), best_trials is the front `analyze` prints."""
    other = Path(cfg.warm_start)
    given = f"--warm-start {cfg.warm_start}"
    if other.resolve() == home.resolve():
        raise UserError(f"{given} is this experiment; give an earlier one")
    try:
        methods = [s["method"] for s in read_manifest(other)["sweeps"]]
        study = load_study(other, cfg.method) if cfg.method in methods else None
    except UserError as e:
        raise UserError(f"{given}: {e}") from None
    if study is None:
        raise UserError(
            f"{given} holds a study of another method ({', '.join(methods)}), not of {cfg.method}"
        )
    trials = study.get_trials(deepcopy=False)
    if not any(t.state == TrialState.COMPLETE and not is_epoch_point(t) for t in trials):
        raise UserError(f"{given}: its {cfg.method} study has no completed trials")
    front = study.best_trials
    if not front:
        raise UserError(
            f"{given}: no completed {cfg.method} trial there is feasible (all below its "
            "utility floor)"
        )
    best_first = -1.0 if study.directions[0] == StudyDirection.MAXIMIZE else 1.0
    return other, sorted(front, key=lambda t: (best_first * t.values[0], t.number)), trials


def _fitted(
    params: dict, number: int, dists: dict, defaults: dict, fixed: dict, notes: list[str]
) -> dict:
    """One earlier point in this space: clipped into its ranges, missing values at the reference
    default, this sweep's fixed and unknown parameters dropped (notes: a line per change)."""
    where = f"warm start: trial {number}'s"
    point = {}
    for name, dist in dists.items():
        if name not in params:
            if name in defaults:  # else the sampler draws it
                point[name] = defaults[name]
            continue
        value = params[name]
        if isinstance(dist, CategoricalDistribution):
            if value not in dist.choices:
                choices = ", ".join(map(str, dist.choices))
                raise UserError(
                    f"--warm-start: trial {number} there has {name}={value!r}, not one of this "
                    f"sweep's choices ({choices}); --fix {name} to run without it"
                )
            point[name] = value
            continue
        kept = min(max(value, dist.low), dist.high)
        kept = int(round(kept)) if isinstance(dist, IntDistribution) else float(kept)
        if not math.isclose(kept, value, rel_tol=1e-12):
            notes.append(
                f"{where} {name}={value:g} clipped to {kept:g}, into this sweep's range "
                f"{dist.low:g}..{dist.high:g}"
            )
        point[name] = kept
    unknown = sorted(set(params) - set(dists) - set(fixed))
    if unknown:
        notes.append(f"{where} {', '.join(unknown)} not searched by this sweep: left out")
    return point


def warm_points(cfg: SweepConfig, home: Path) -> tuple[list[dict], list[str]]:
    """The points the new study evaluates after its reference defaults, and one warning line per
    value changed to fit this sweep. Each is the params of an earlier front trial as sampled (an
    epoch point stands for its Ray trial: that trial's params, `epochs` its epochs count), once.
    Front order: best first by the earlier study's first objective; past the budget (the trials
    after the defaults) the rest are left out, with a line saying so. Refuses, in one line, a
    folder that is not an experiment, or holds no (completed) study of the method, or is this
    experiment, and a categorical value outside this sweep's choices."""
    other, front, trials = _front(cfg, home)
    by_ray = {
        t.user_attrs["ray_trial_id"]: t
        for t in trials
        if "ray_trial_id" in t.user_attrs and not is_epoch_point(t)
    }
    dists = space_distributions(cfg)
    defaults = cfg.defaults_point()
    fixed = cfg.space_options().fixed
    first = {k: v for k, v in defaults.items() if k in dists}  # trial 0 runs it already
    points, notes, seen = [], [], set()
    for t in front:
        source = by_ray.get(t.user_attrs[EPOCH_OF], t) if is_epoch_point(t) else t
        if source.number in seen:  # another epoch of a trial already taken
            continue
        seen.add(source.number)
        point = _fitted(source.params, source.number, dists, defaults, fixed, notes)
        if point != first and point not in points:
            points.append(point)
    room = max(0, cfg.trials - 1)
    if len(points) > room:
        notes.append(
            f"warm start: {len(points)} front points of {other} but room for {room} after the "
            f"reference defaults in {cfg.trials} trials: kept the {room} best by its first "
            "objective"
        )
    return points[:room], notes
