"""`unlearn-sweep status`: per method, the Optuna study's trial counts and its Pareto front."""

from __future__ import annotations

from pathlib import Path

from sweeps.experiment import EPOCH_OF, is_epoch_point, journal_path, load_study, read_manifest


def study_summary(home: Path) -> list[str]:
    from optuna.trial import TrialState

    from sweeps.objectives import get_objectives

    lines = []
    for sweep in read_manifest(home)["sweeps"]:
        method = sweep["method"]
        path = journal_path(home, method)
        if not path.is_file():
            lines.append(f"{method}: not started")
            continue
        study = load_study(home, method)
        trials = [t for t in study.trials if not is_epoch_point(t)]
        states = [t.state for t in trials]
        count = {s.name.lower(): states.count(s) for s in TrialState}
        lines.append(
            f"{method}: {count['complete']} complete, {count['running']} running, "
            f"{count['fail']} failed, {count['pruned']} pruned "
            f"of {sweep['trials']} requested; {len(study.trials) - len(trials)} earlier "
            "evaluated epochs told as points of their own"
        )
        keys = [o.key for o in get_objectives(sweep["objectives"])]
        # every evaluated epoch is a study trial (sweeps/search.py), so best_trials is the front
        # analyze prints: one row per (trial, epoch), named by the trial's number
        number = {t.user_attrs.get("ray_trial_id"): t.number for t in trials}
        front = sorted(study.best_trials, key=lambda t: -t.values[0])
        if front:
            lines.append(
                "  Pareto front:    epoch  " + "  ".join(f"{k:>22s}" for k in keys) + "  params"
            )
            for t in front:
                own = number.get(t.user_attrs.get(EPOCH_OF), "?") if is_epoch_point(t) else t.number
                vals = "  ".join(f"{v:22.4g}" for v in t.values)
                params = ", ".join(
                    f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in t.params.items()
                )
                lines.append(
                    f"  trial {own:>4}:  {t.user_attrs.get('epoch', '?'):>5}  {vals}  {params}"
                )
    return lines
