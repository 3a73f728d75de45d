"""Everything the report and the plots show, computed once from the loaded rows: fronts per
series and across series, hypervolume curves, range-bound flags and parameter importances."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from analysis import confirmed, pareto
from analysis.load import STATUSES, Experiment, load, load_study, objective_keys
from analysis.params import Importances, SearchRange, importances, near_bounds, search_ranges
from sweeps.objectives import OBJECTIVES
from unlearn_core.errors import UserError

# metrics the front tables show besides the objectives; then any objective's metric present
HEADLINE = (
    "forget_quality",
    "model_utility",
    "forget_truth_ratio",
    "forget_Q_A_ROUGE",
    "privleak",
    "extraction_strength",
)


@dataclass(frozen=True)
class Analysis:
    rows: pd.DataFrame  # analysis.load's table, one row per trial and evaluated epoch
    experiments: list[Experiment]
    objectives: dict[str, tuple[list[str], list[str]]]  # series -> (keys, directions)
    on_front: pd.Series  # bool per row: front of its series in the sweep's objectives
    # the objectives every series shares (keys, directions): the front across series, the
    # hypervolume and the Pareto plot (its first two as x and y) use these
    shared: tuple[list[str], list[str]]
    on_global_front: pd.Series  # bool per row: front across all series, in `shared`
    on_plot_front: pd.Series  # bool per row: front of its series in the first two of `shared`
    curves: pd.DataFrame  # series, trials, hypervolume (in `shared`, against `reference`)
    ranges: dict[str, dict[str, SearchRange]]  # series -> searched ranges
    flags: pd.DataFrame  # front points within NEAR_BOUND of a range bound
    importances: dict[str, Importances]  # series -> importances
    floor: float  # log10 forget quality's hypervolume reference (pareto.LOG10_FQ_FLOOR)
    reference: list[float]  # hypervolume reference point, one value per key of `shared`
    # points `confirm` reran on fresh seeds (analysis/confirmed.py's table, with each point's
    # series and trial_index); empty when none was
    confirmed: pd.DataFrame = field(default_factory=pd.DataFrame)

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
    return {
        s: (by_name[e], m)
        for s, e, m in zip(first["series"], first["experiment"], first["method"], strict=True)
    }


def _check_comparable(exps: list[Experiment]) -> None:
    seen = {
        (s["source"]["benchmark"], s["source"]["split"]) for e in exps for s in e.sweeps.values()
    }
    if len(seen) > 1:
        listed = ", ".join(f"{b}/{s}" for b, s in sorted(seen))
        raise UserError(
            f"the folders evaluate different benchmarks or splits ({listed}); "
            "fronts and hypervolumes compare only on one"
        )


def shared_objectives(
    objectives: dict[str, tuple[list[str], list[str]]],
) -> tuple[list[str], list[str]]:
    """The (key, direction) pairs every series optimises, in the first series' order. Series
    that share fewer than two (one where a series has only one) are not compared: UserError."""
    pairs = [list(zip(*kd, strict=True)) for kd in objectives.values()]
    common = [p for p in pairs[0] if all(p in q for q in pairs[1:])]
    if len(common) < min(2, *(len(q) for q in pairs)):
        listed = "; ".join(f"{s}: {', '.join(k)}" for s, (k, _) in objectives.items())
        raise UserError(
            f"the sweeps optimise different objectives ({listed}); fronts and "
            "hypervolumes compare only sweeps that share them: analyse each "
            "folder on its own"
        )
    return [k for k, _ in common], [d for _, d in common]


def analyze(homes: list[str | Path], floor: float = pareto.LOG10_FQ_FLOOR) -> Analysis:
    rows, exps = load(homes)
    _check_comparable(exps)
    done = set(rows.loc[rows["status"] == "complete", "experiment"]) if len(rows) else set()
    for e in exps:
        if e.name not in done:
            raise UserError(
                f"{e.home} has no complete trial yet (no feasible evaluated epoch to analyse)"
            )
    sweeps = _series_sweeps(rows, exps)
    objectives = {s: objective_keys(e.sweeps[m]) for s, (e, m) in sweeps.items()}
    on_front = pd.Series(False, index=rows.index)
    for s, (keys, dirs) in objectives.items():
        part = rows[rows["series"] == s]
        on_front.loc[part.index] = pareto.front(part, keys, dirs)
    keys, dirs = shared_objectives(objectives)
    on_global = pareto.front(rows, keys, dirs, by=None)
    on_plot = pareto.front(rows, keys[:2], dirs[:2])
    studies = {s: load_study(e.home, m) for s, (e, m) in sweeps.items()}
    ranges = {s: search_ranges(study) for s, study in studies.items()}
    flags = pd.concat(
        [near_bounds(rows[on_front & (rows["series"] == s)], ranges[s]) for s in sweeps],
        ignore_index=True,
    )
    imps = {s: importances(studies[s], *objectives[s]) for s in sweeps}
    return Analysis(
        rows,
        exps,
        objectives,
        on_front,
        (keys, dirs),
        on_global,
        on_plot,
        pareto.hypervolume_curve(rows, floor, keys, dirs),
        ranges,
        flags,
        imps,
        floor,
        pareto.reference_point(keys, floor),
        confirmed_points(rows, exps),
    )


def confirmed_points(rows: pd.DataFrame, exps: list[Experiment]) -> pd.DataFrame:
    """The confirmed points of the folders that are evaluated epochs of their rows, with the
    rows' series and trial_index."""
    on = ["experiment", "method", "trial_id", "epoch"]
    table = pd.concat([confirmed.table(e.home, e.name) for e in exps], ignore_index=True)
    evaluated = rows[rows["status"].isin(["complete", "stopped"])]
    table = table.astype({"epoch": float})
    return table.merge(
        evaluated[[*on, "series", "trial_index"]].astype({"epoch": float}), on=on, how="inner"
    )


def front_table(a: Analysis, series: str) -> pd.DataFrame:
    """The series' front, best first in its first objective: trial, epoch, objectives,
    parameters, headline metrics."""
    keys, dirs = a.objectives[series]
    rows = a.rows[a.on_front & (a.rows["series"] == series)]
    rows = rows.sort_values(keys[0], ascending=dirs[0] == "min")
    params = [c for c in rows.columns if c.startswith("p_") and rows[c].notna().any()]
    metrics = [
        m
        for m in dict.fromkeys(HEADLINE + tuple(o.needs for o in OBJECTIVES.values()))
        if m in rows and m not in keys and rows[m].notna().any()
    ]
    table = rows[["trial_id", "number", "epoch", *keys, *params, *metrics]]
    return table.rename(columns={p: p[2:] for p in params}).reset_index(drop=True)


def counts(a: Analysis) -> pd.DataFrame:
    """Trials per series by trial status (a trial counted once), plus rows evaluated."""
    trials = a.rows.assign(
        key=a.rows["trial_id"].where(a.rows["trial_id"] != "", "#" + a.rows["number"].astype(str))
    )
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
