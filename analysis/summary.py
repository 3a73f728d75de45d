"""Everything the report and the plots show, computed once from the loaded rows: fronts per
series and across series, hypervolume curves, range-bound flags and parameter importances."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis import pareto
from analysis.load import STATUSES, Experiment, load, load_study, objective_keys
from analysis.params import Importances, SearchRange, importances, near_bounds, search_ranges
from unlearn_core.errors import UserError


@dataclass(frozen=True)
class Analysis:
    rows: pd.DataFrame  # analysis.load's table, one row per trial and evaluated epoch
    experiments: list[Experiment]
    objectives: dict[str, tuple[list[str], list[str]]]  # series -> (keys, directions)
    on_front: pd.Series  # bool per row: front of its series in the sweep's objectives
    on_global_front: pd.Series  # bool per row: front across all series
    on_fq_mu_front: pd.Series  # bool per row: front of its series in (log10 FQ, utility)
    curves: pd.DataFrame  # series, trials, hypervolume
    ranges: dict[str, dict[str, SearchRange]]  # series -> searched ranges
    flags: pd.DataFrame  # front points within NEAR_BOUND of a range bound
    importances: dict[str, Importances]  # series -> importances
    floor: float  # hypervolume reference: (floor, 0) in (log10 FQ, utility)

    @property
    def refs(self) -> dict[str, dict]:
        e = self.experiments[0]
        return {k: v for k, v in (("target", e.target), ("retain", e.retain)) if v is not None}

    @property
    def series(self) -> list[str]:
        return list(self.rows["series"].unique())


def _series_sweeps(rows: pd.DataFrame, exps: list[Experiment]) -> dict[str, tuple]:
    by_name = {e.name: e for e in exps}
    first = rows.drop_duplicates("series")
    return {s: (by_name[e], m) for s, e, m in zip(first["series"], first["experiment"],
                                                 first["method"], strict=True)}


def _check_comparable(exps: list[Experiment]) -> None:
    seen = {(s["benchmark"], s["split"]) for e in exps for s in e.sweeps.values()}
    if len(seen) > 1:
        listed = ", ".join(f"{b}/{s}" for b, s in sorted(seen))
        raise UserError(f"the folders evaluate different benchmarks or splits ({listed}); "
                        "fronts and hypervolumes compare only on one")


def analyze(homes: list[str | Path], floor: float = pareto.LOG10_FQ_FLOOR) -> Analysis:
    rows, exps = load(homes)
    _check_comparable(exps)
    done = set(rows.loc[rows["status"] == "complete", "experiment"]) if len(rows) else set()
    for e in exps:
        if e.name not in done:
            raise UserError(f"{e.home} has no complete trial yet (no feasible evaluated epoch "
                            "to analyse)")
    sweeps = _series_sweeps(rows, exps)
    objectives = {s: objective_keys(e.sweeps[m]) for s, (e, m) in sweeps.items()}
    on_front = pd.Series(False, index=rows.index)
    for s, (keys, dirs) in objectives.items():
        part = rows[rows["series"] == s]
        on_front.loc[part.index] = pareto.front(part, keys, dirs)
    shared = {(tuple(k), tuple(d)) for k, d in objectives.values()}
    keys, dirs = shared.pop() if len(shared) == 1 else (pareto.FQ_MU, ("max", "max"))
    on_global = pareto.front(rows, keys, dirs, by=None)
    on_fq_mu = pareto.front(rows, pareto.FQ_MU, ("max", "max"))
    studies = {s: load_study(e.home, m) for s, (e, m) in sweeps.items()}
    ranges = {s: search_ranges(study) for s, study in studies.items()}
    flags = pd.concat([near_bounds(rows[on_front & (rows["series"] == s)], ranges[s])
                       for s in sweeps], ignore_index=True)
    imps = {s: importances(studies[s], *objectives[s]) for s in sweeps}
    return Analysis(rows, exps, objectives, on_front, on_global, on_fq_mu,
                    pareto.hypervolume_curve(rows, floor), ranges, flags, imps, floor)


def front_table(a: Analysis, series: str) -> pd.DataFrame:
    """The series' front, best first in its first objective: trial, epoch, objectives,
    parameters, headline metrics."""
    keys, dirs = a.objectives[series]
    rows = a.rows[a.on_front & (a.rows["series"] == series)]
    rows = rows.sort_values(keys[0], ascending=dirs[0] == "min")
    params = [c for c in rows.columns if c.startswith("p_") and rows[c].notna().any()]
    metrics = [m for m in ("forget_quality", "model_utility", "forget_truth_ratio",
                           "forget_Q_A_ROUGE", "privleak", "extraction_strength")
               if m in rows and m not in keys]
    table = rows[["trial_id", "number", "epoch", *keys, *params, *metrics]]
    return table.rename(columns={p: p[2:] for p in params}).reset_index(drop=True)


def counts(a: Analysis) -> pd.DataFrame:
    """Trials per series by trial status (a trial counted once), plus rows evaluated."""
    trials = a.rows.assign(key=a.rows["trial_id"].where(a.rows["trial_id"] != "",
                                                        "#" + a.rows["number"].astype(str)))
    per_trial = trials.drop_duplicates(["series", "key"])
    table = pd.crosstab(per_trial["series"], per_trial["trial_status"])
    table = table.reindex(columns=list(STATUSES), fill_value=0)
    table.insert(0, "trials", table.sum(axis=1))
    evaluated = a.rows[a.rows["status"].isin(["complete", "stopped"])].groupby("series").size()
    table["evaluated epochs"] = evaluated.reindex(table.index).fillna(0).astype(int)
    table["front points"] = a.on_front.groupby(a.rows["series"]).sum().reindex(table.index)
    final = a.curves.groupby("series")["hypervolume"].last()
    table["hypervolume"] = final.reindex(table.index)
    return table.loc[[s for s in a.series if s in table.index]]
