"""`unlearn-sweep status`: per method, the Optuna study's trial counts and its Pareto front."""

from __future__ import annotations

from pathlib import Path

from unlearn_core.errors import UserError


def load_study(home: Path, method: str):
    """The method's Optuna study, or one line naming the journal that cannot be read."""
    import optuna

    from sweeps.launch import journal_path, study_name
    from sweeps.search import journal

    path = journal_path(home, method)
    try:
        return optuna.load_study(study_name=study_name(method), storage=journal(path))
    except Exception as e:  # a corrupted journal raises from deep inside optuna
        raise UserError(f"cannot read {path}: {(str(e).splitlines() or [repr(e)])[0]}") from e


def study_summary(home: Path) -> list[str]:
    from optuna.trial import TrialState

    from sweeps.launch import journal_path, read_manifest
    from sweeps.objectives import get_objectives

    lines = []
    for sweep in read_manifest(home)["sweeps"]:
        method = sweep["method"]
        path = journal_path(home, method)
        if not path.is_file():
            lines.append(f"{method}: not started")
            continue
        study = load_study(home, method)
        states = [t.state for t in study.trials]
        count = {s.name.lower(): states.count(s) for s in TrialState}
        lines.append(
            f"{method}: {count['complete']} complete, {count['running']} running, "
            f"{count['fail']} failed, {count['pruned']} pruned "
            f"of {sweep['trials']} requested"
        )
        keys = [o.key for o in get_objectives(sweep["objectives"])]
        front = sorted(study.best_trials, key=lambda t: -t.values[0])
        if front:
            lines.append("  Pareto front: " + "  ".join(f"{k:>22s}" for k in keys) + "  params")
            for t in front:
                vals = "  ".join(f"{v:22.4g}" for v in t.values)
                params = ", ".join(
                    f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in t.params.items()
                )
                lines.append(f"  trial {t.number:4d}:  {vals}  {params}")
    return lines
