"""What the search spaces say about the results: the searched ranges (read back from the study's
own distributions, so `--space` overrides count), front points near a range bound, and Optuna's
parameter importances."""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sweeps.experiment import is_epoch_point

log = logging.getLogger(__name__)
NEAR_BOUND = 0.1  # a front point within this fraction of the range (log-scaled if log) is flagged


@dataclass(frozen=True)
class SearchRange:
    low: float
    high: float
    log: bool

    def position(self, value: float) -> float:
        """0 at the low bound, 1 at the high bound, measured on the scale the sampler used."""
        if self.high == self.low:
            return 0.5
        if self.log:
            lo, hi = math.log(self.low), math.log(self.high)
            return (math.log(value) - lo) / (hi - lo)
        return (value - self.low) / (self.high - self.low)


def search_ranges(study) -> dict[str, SearchRange]:
    """Numeric parameter -> range, from the distributions the study's trials were sampled from
    (fixed parameters have none). The last trial's distribution wins if a resume changed it."""
    from optuna.distributions import FloatDistribution, IntDistribution

    out: dict[str, SearchRange] = {}
    if study is None:
        return out
    for t in study.get_trials(deepcopy=False):
        for name, d in t.distributions.items():
            if isinstance(d, FloatDistribution | IntDistribution):  # categoricals: no range
                out[name] = SearchRange(float(d.low), float(d.high), bool(d.log))
    return out


def near_bounds(
    front_rows: pd.DataFrame, ranges: dict[str, SearchRange], frac: float = NEAR_BOUND
) -> pd.DataFrame:
    """One row per (front trial, parameter) sitting within `frac` of a bound: the range may have
    been too narrow there. Columns series, trial_id, param, value, bound ("low"/"high"), range."""
    out = []
    for _, row in front_rows.drop_duplicates(["series", "trial_id"]).iterrows():
        for name, r in ranges.items():
            value = row.get(f"p_{name}")
            if value is None or not np.isfinite(value):
                continue
            pos = r.position(float(value))
            if pos <= frac or pos >= 1 - frac:
                out.append(
                    {
                        "series": row["series"],
                        "trial_id": row["trial_id"],
                        "param": name,
                        "value": float(value),
                        "bound": "low" if pos <= frac else "high",
                        "range": f"[{r.low:g}, {r.high:g}]" + (" log" if r.log else ""),
                    }
                )
    return pd.DataFrame(out, columns=["series", "trial_id", "param", "value", "bound", "range"])


@dataclass(frozen=True)
class Importances:
    """Per target (each objective, plus "front" for all objectives jointly): param -> share."""

    values: dict[str, dict[str, float]]
    note: str | None  # why there are none, or why they are uninformative


def importances(study, keys: list[str], directions: list[str]) -> Importances:
    """Optuna's default evaluator (PED-ANOVA in Optuna 5) on the study's complete trials. It
    ranks parameters by how much the best trials' distribution differs from all trials', for low
    values: maximised objectives are negated. "front" uses its multi-objective (HSSP) top set."""
    import optuna

    complete = (
        []
        if study is None
        else [
            t
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if not is_epoch_point(t)
        ]
    )
    if len(complete) < 2:
        return Importances({}, f"{len(complete)} complete trial(s); importances need >= 2")
    if not search_ranges(study):
        return Importances({}, "no searched parameter")
    # one trial per sampled configuration: a trial's earlier epochs, told as points of their own
    # (sweeps/search.py), would weigh its parameters once per epoch
    trials = optuna.create_study(directions=study.directions)
    trials.add_trials(complete)
    targets = {"front": None} if len(keys) > 1 else {}
    for i, (key, d) in enumerate(zip(keys, directions, strict=True)):
        sign = -1.0 if d == "max" else 1.0
        targets[key] = lambda t, i=i, sign=sign: sign * t.values[i]
    values, notes = {}, set()
    for name, target in targets.items():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            values[name] = optuna.importance.get_param_importances(trials, target=target)
        # PED-ANOVA returns equal shares (with a warning) when too few trials reach the top set
        notes |= {str(w.message) for w in caught if "too small" in str(w.message)}
    return Importances(
        values, "too few trials for PED-ANOVA: importances are equal" if notes else None
    )
