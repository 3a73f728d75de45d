"""`unlearn-sweep status`: per method, the Optuna study's trial counts and its Pareto front."""

from __future__ import annotations

from pathlib import Path

from sweeps.experiment import journal_path, load_study, read_manifest


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
