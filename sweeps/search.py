"""The Optuna side of a sweep: sampler choice, a grid that reproduces the classic fixed sweeps,
and an OptunaSearch that never leaves a trial RUNNING and tells the utility floor as a
constraint."""

from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from ray.tune.search import ConcurrencyLimiter, SearchGenerator
from ray.tune.search.optuna import OptunaSearch

from search_spaces import SPACES
from search_spaces._common import PRESETS, SpaceOptions
from sweeps.relocate import inside, relative
from sweeps.rows import ray_name

OBJECTIVE = ray_name("objectives", "")  # the prefix of the objectives' names for Ray
# The user attribute of a study trial that the searcher added for an evaluated epoch of a Ray
# trial other than its last: its value is that Ray trial's id. Such a trial is a point the
# sampler learns from and the front holds, not a trial of the budget.
EPOCH_OF = "epoch_of"


def is_epoch_point(t) -> bool:
    """True for a study trial recording an earlier evaluated epoch of a Ray trial (EPOCH_OF)."""
    return EPOCH_OF in t.user_attrs


# The classic grid: 3 learning rates x 3 values of the method's main coefficient x 3 epoch counts,
# as open-unlearning's community scripts sweep (27 runs per method).
GRID_COEF = {
    "grad_diff": ("alpha", [1.0, 2.0, 5.0]),
    "npo": ("beta", [0.05, 0.1, 0.5]),
    "simnpo": ("beta", [2.5, 4.5, 7.5]),
}
GRID_LR = {"tiny": [5e-4, 1e-3, 2e-3], "llm": [1e-5, 2e-5, 5e-5]}
GRID_EPOCHS = {"tiny": [2, 4, 6], "llm": [5, 10, 20]}


def grid_space(method: str, preset: str, defaults: dict, fixed=()) -> dict[str, list]:
    """The 27-point grid; every other parameter of the space held at its reference default."""
    # scalars only (the schedule included: GridSampler refuses a parameter its grid lacks)
    space = {k: [v] for k, v in defaults.items() if isinstance(v, int | float | str)}
    space |= {"lr": GRID_LR[preset], "epochs": GRID_EPOCHS[preset]}
    if method in GRID_COEF:
        name, values = GRID_COEF[method]
        space[name] = values
    return {k: v for k, v in space.items() if k not in fixed}  # fixed values are not sampled


def make_sampler(
    name: str, seed: int, method: str, preset: str, defaults: dict | None = None, fixed=()
) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    assert name == "grid", name
    return optuna.samplers.GridSampler(grid_space(method, preset, defaults or {}, fixed), seed=seed)


class ExperimentJournal(JournalFileBackend):
    """A journal file named relative to the experiment: Ray pickles the searcher, and with it
    the study's storage, into its state, and the unpickled one must find the journal where the
    experiment is now, not where it was created (sweeps/relocate.py)."""

    def __init__(self, rel: str) -> None:
        self.rel = rel
        super().__init__(str(inside(rel)))

    def __reduce__(self):
        return ExperimentJournal, (self.rel,)


def searcher_journal(home: Path, path: Path) -> JournalStorage:
    """The journal at `path` in `home`, for the searcher Ray pickles."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(ExperimentJournal(relative(home, path)))


def repair_journal(path: Path) -> int:
    """Cut a last line left half-written by a killed driver (kept in `<journal>.cut`): Optuna
    reads past it, but its next append would join that line and be lost, after which creating a
    trial fails. Returns the bytes cut (0 when the journal ends cleanly)."""
    if not path.is_file():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    path.with_name(path.name + ".cut").write_bytes(data[keep:])
    with path.open("r+b") as f:
        f.truncate(keep)
    return len(data) - keep


class UnlearnSearch(OptunaSearch):
    """OptunaSearch that (1) tells FAIL, with the cause, for errored, diverged or non-finite trials
    instead of leaving them RUNNING (Ray logs the tell error and moves on), and (2) forwards the
    utility-floor violation as an Optuna constraint (feasible iff <= 0)."""

    def _setup_study(self, mode: str | list[str]) -> None:
        super()._setup_study(mode)
        # optuna-dashboard and optuna.visualization name the axes from the study's metric names
        # (else "Objective 0"): the objective keys, as the trials report them
        if self._ot_study.metric_names is None:
            self._ot_study.set_metric_names([m.removeprefix(OBJECTIVE) for m in self._metric])

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        # The pickled sampler can be older than the study (the driver was killed between two
        # saves): fresh random numbers keep it from suggesting a configuration a second time.
        for sampler in {id(s): s for s in (self._sampler, self._ot_study.sampler) if s}.values():
            sampler.reseed_rng()

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return super().on_trial_complete(trial_id, result, error)
        ot_trial = self._ot_trials[trial_id]
        if self._ot_study._storage.get_trial(ot_trial._trial_id).state.is_finished():
            # a resumed sweep re-ran a trial the study had already recorded: keep the first record
            self._completed_trials.add(trial_id)
            return None
        ot_trial.set_user_attr("ray_trial_id", trial_id)
        # `result` is flat: Ray names a reported section's fields "<section>/<key>"
        result = result or {}
        values = [result.get(m) for m in self.metric]
        finite = values and all(isinstance(v, int | float) and math.isfinite(v) for v in values)
        if error or not finite:
            failure = result.get(ray_name("run", "failure"), "no finite objectives")
            cause = "error" if error else failure
            ot_trial.set_user_attr("failure", str(cause))
            self._ot_study.tell(ot_trial, state=TrialState.FAIL)
            self._completed_trials.add(trial_id)
            return None
        ot_trial.set_user_attr("epoch", int(result.get(ray_name("run", "epoch"), 0)))
        if (violation := result.get(ray_name("run", "utility_violation"))) is not None:
            ot_trial.set_constraint("utility_floor", float(violation))
        return super().on_trial_complete(trial_id, result, error)


def make_searcher(
    method: str,
    sampler: str,
    seed: int,
    opts: SpaceOptions,
    keys: list[str],
    modes: list[str],
    storage: JournalStorage,
    study_name: str,
    defaults: dict | None,
    defaults_first: bool = True,
    warm: list[dict] | None = None,
) -> UnlearnSearch:
    """Define-by-run search over the method's space (a partial of a module-level function, so the
    searcher pickles), the reference defaults evaluated first, then the `warm` points (an earlier
    front, sweeps/warm.py). OptunaSearch enqueues them in the study: they are its first trials,
    counted in the budget."""
    assert opts.preset in PRESETS
    first = [defaults, *(warm or [])] if defaults else None
    return UnlearnSearch(
        space=partial(SPACES[method], opts=opts),
        metric=[ray_name("objectives", k) for k in keys],
        mode=modes,
        sampler=make_sampler(sampler, seed, method, opts.preset, defaults, opts.fixed),
        study_name=study_name,
        storage=storage,
        points_to_evaluate=first if defaults_first and sampler != "grid" else None,
    )


LOST = "lost: "  # the prefix of a failure that was the driver's, not the trial's


def trials_left(storage: JournalStorage, study_name: str, trials: int) -> tuple[int, int]:
    """For a study to continue without Ray's experiment state (deleted, or `storage` elsewhere):
    the Optuna journal is the record of what ran. Trials it holds as finished for a real cause
    stay; those it holds RUNNING had their Ray state lost with it: they are failed as lost and
    their configurations queued to run again. Returns (trials still to run, trials in the study)."""
    names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
    if study_name not in names:
        return trials, 0
    study = optuna.load_study(study_name=study_name, storage=storage)
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        storage.set_trial_user_attr(t._trial_id, "failure", LOST + "Ray's state of it was gone")
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        study.enqueue_trial(t.params, skip_if_exists=False)
    done = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state.is_finished() and not str(t.user_attrs.get("failure", "")).startswith(LOST)
    ]
    return max(0, trials - len(done)), len(study.trials)


class MovableGenerator(SearchGenerator):
    """Tune's wrapper around the searcher, as Tune builds it for `max_concurrent_trials` (a
    ConcurrencyLimiter inside a SearchGenerator), except that a restored one creates its new
    trials where the experiment is now: Tune's restores, with its counters, the experiment spec
    it pickled, whose storage names the folder of the sweep's first run."""

    def __init__(self, searcher: UnlearnSearch, max_concurrent: int, storage: str | None) -> None:
        super().__init__(ConcurrencyLimiter(searcher, max_concurrent=max_concurrent))
        self.storage = storage  # Ray's storage relative to the experiment; None: elsewhere

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        if self.storage is not None:
            self._experiment.storage.storage_fs_path = str(inside(self.storage))
