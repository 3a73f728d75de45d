"""The Optuna side of a sweep: sampler choice, a grid that reproduces the classic fixed sweeps,
and an OptunaSearch that never leaves a trial RUNNING and tells the utility floor as a
constraint."""

from __future__ import annotations

import math
from dataclasses import dataclass
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
from sweeps import together
from sweeps.experiment import EPOCH_OF, is_epoch_point
from sweeps.relocate import inside, relative
from sweeps.rows import is_step_report, ray_name

OBJECTIVE = ray_name("objectives", "")  # the prefix of the objectives' names for Ray
EPOCH = ray_name("run", "epoch")


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


@dataclass(frozen=True)
class Budget:
    """What a sampler's start-up is sized by: the trials of the sweep, the dimensions its space
    searches, and the study trials each sweep trial adds (one per evaluated epoch)."""

    trials: int = 32
    dims: int = 4
    points_per_trial: float = 1.0

    def startup_configs(self) -> int:
        """Random configurations after the reference defaults before TPE or GP fit a model: a
        tenth of the budget per 4 searched dimensions, 2 to 10. Optuna's fixed 10 made the first
        11 trials of TPE, GP and random the same, so any budget under ~15 was random search
        (bench_search, issue 17)."""
        return min(10, max(2, math.ceil(self.trials * self.dims / 40)))

    def startup_points(self) -> int:
        """Optuna counts start-up in completed study trials, and each sweep trial adds one per
        evaluated epoch: the defaults and the random configurations, in study trials."""
        return max(1, round((1 + self.startup_configs()) * self.points_per_trial))

    def population(self) -> int:
        """NSGA-II's population: a quarter of the budget, 4 to 50. Optuna's 50 exceeded the
        default budget (32), so such a sweep never left its random first generation. Its
        generations are of sweep trials (their last epoch); earlier epochs carry none."""
        return min(50, max(4, self.trials // 4))


def budget_of(method: str, opts: SpaceOptions, trials: int, eval_every: int) -> Budget:
    """The Budget of a sweep: the space run once on a throwaway study gives its searched
    dimensions and epoch range; a trial of E epochs evaluates ceil(E / eval_every) of them."""
    study = optuna.create_study(directions=["maximize"], sampler=optuna.samplers.RandomSampler(0))
    trial = study.ask()
    params = SPACES[method](trial, opts)
    d = trial.distributions.get("epochs")
    epochs = range(int(d.low), int(d.high) + 1) if d is not None else [int(params["epochs"])]
    evaluated = sum(math.ceil(e / eval_every) for e in epochs) / len(epochs)
    return Budget(trials, len(trial.distributions), evaluated)


def make_sampler(
    name: str,
    seed: int,
    method: str,
    preset: str,
    defaults: dict | None = None,
    fixed=(),
    budget: Budget = Budget(),
) -> optuna.samplers.BaseSampler:
    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, n_startup_trials=budget.startup_points()
        )
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=budget.startup_points())
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=budget.population())
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


def _finite_values(result: dict | None, metric: list[str]) -> list[float] | None:
    values = [(result or {}).get(m) for m in metric]
    ok = values and all(isinstance(v, int | float) and math.isfinite(v) for v in values)
    return [float(v) for v in values] if ok else None


class UnlearnSearch(OptunaSearch):
    """OptunaSearch that (1) tells FAIL, with the cause, for errored, diverged or non-finite trials
    instead of leaving them RUNNING (Ray logs the tell error and moves on), (2) forwards the
    utility-floor violation as an Optuna constraint (feasible iff <= 0), and (3) learns from every
    evaluated epoch: Ray's OptunaSearch tells a multi-objective study only a trial's last result,
    while analysis and export choose among every epoch. Each evaluated epoch before the last is
    added to the study as a completed trial of its own (the Ray trial's params, user attrs
    EPOCH_OF, epoch and stop_after: `TrainConfig.stop_after` reproduces it), so the sampler, the
    study's best_trials and the analysis front all see the same points."""

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

    def _pending(self) -> dict[str, dict]:
        """Each running trial's latest result, held until the next shows it was not the last.
        In __dict__ so Ray's pickle of the searcher keeps it; a searcher pickled before this
        field existed starts it empty."""
        return self.__dict__.setdefault("_last_results", {})

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if is_step_report(result):  # training statistics between evaluations: nothing to learn
            return
        # Ray's own returns at once for several objectives. A result is known to be an earlier
        # epoch only when the next arrives, so the one before this is added now.
        before = self._pending().get(trial_id)
        self._pending()[trial_id] = result
        if before is not None and before.get(EPOCH) != result.get(EPOCH):
            self._add_epoch_point(trial_id, before)

    def _add_epoch_point(self, trial_id: str, result: dict) -> None:
        """The evaluated epoch in `result` as a completed study trial, once per (trial, epoch):
        a trial resumed from a checkpoint reports its epochs again."""
        values = _finite_values(result, self.metric)
        if values is None or trial_id not in self._ot_trials or result.get(EPOCH) is None:
            return
        epoch = int(result[EPOCH])
        for t in self._ot_study.get_trials(deepcopy=False):
            if t.user_attrs.get(EPOCH_OF) == trial_id and t.user_attrs.get("epoch") == epoch:
                return
        asked = self._ot_trials[trial_id]
        asked.set_user_attr("ray_trial_id", trial_id)  # its points name it while it runs
        violation = result.get(ray_name("run", "utility_violation"))
        self._ot_study.add_trial(
            optuna.trial.create_trial(
                values=values,
                params=asked.params,
                distributions=asked.distributions,
                user_attrs={EPOCH_OF: trial_id, "epoch": epoch, "stop_after": epoch},
                constraints=None if violation is None else {"utility_floor": float(violation)},
            )
        )

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False):
        last = self._pending().pop(trial_id, None)
        told = None if error else _finite_values(result, self.metric)
        if last is not None and (told is None or last.get(EPOCH) != result.get(EPOCH)):
            # the trial will not be told `last` (it failed, or the stopper cut it after)
            self._add_epoch_point(trial_id, last)
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
        if error or _finite_values(result, self.metric) is None:
            failure = result.get(ray_name("run", "failure"), "no finite objectives")
            cause = "error" if error else failure
            ot_trial.set_user_attr("failure", str(cause))
            self._ot_study.tell(ot_trial, state=TrialState.FAIL)
            self._completed_trials.add(trial_id)
            return None
        ot_trial.set_user_attr("epoch", int(result.get(EPOCH, 0)))
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
    budget: Budget = Budget(),
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
        sampler=make_sampler(sampler, seed, method, opts.preset, defaults, opts.fixed, budget),
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
        if t.state.is_finished()
        and not is_epoch_point(t)
        and not str(t.user_attrs.get("failure", "")).startswith(LOST)
    ]
    return max(0, trials - len(done)), sum(not is_epoch_point(t) for t in study.trials)


class MovableGenerator(SearchGenerator):
    """Tune's wrapper around the searcher, as Tune builds it for `max_concurrent_trials` (a
    ConcurrencyLimiter inside a SearchGenerator), except that a restored one creates its new
    trials where the experiment is now: Tune's restores, with its counters, the experiment spec
    it pickled, whose storage names the folder of the sweep's first run. Several studies run at
    once (sweeps/together.py) ask the gate before each trial and stop through it; alone, the gate
    is open and changes nothing."""

    def __init__(self, searcher: UnlearnSearch, max_concurrent: int, storage: str | None) -> None:
        super().__init__(ConcurrencyLimiter(searcher, max_concurrent=max_concurrent))
        self.storage = storage  # Ray's storage relative to the experiment; None: elsewhere

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        if self.storage is not None:
            self._experiment.storage.storage_fs_path = str(inside(self.storage))

    def next_trial(self):
        return together.next_trial(self, super().next_trial)

    def is_finished(self) -> bool:
        return together.finished(self, super().is_finished())

    def save_to_dir(self, dirpath: str, session_str: str) -> None:
        super().save_to_dir(dirpath, session_str)
        together.saved(self)  # raises StudyStopped: the set is to stop (Ctrl-C)
