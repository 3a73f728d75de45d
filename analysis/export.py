"""Pick one configuration per method by a stated rule and write it where `unlearn --config` reads
it: `HOME/best/<method>.yaml` and a `.json` mirror. Rules (v: objective values of feasible
evaluated epochs; n_j = (v_j - worst_j) / (best_j - worst_j) over the method's Pareto front, 1 at
its best, 1 where the front does not vary; "better" follows each objective's direction):
- knee:        argmin over the front of sqrt(sum_j (1 - n_j)^2), the point closest to the ideal
               corner after normalising each objective.
- weighted:    argmax over the front of sum_j w_j * n_j (weights in the sweep's objective order).
- max-forget:  the best forget objective s.t. the utility objective is at least F of the
               target's, measured from its hypervolume reference R (analysis/pareto.py):
               |u - R| >= F * |u(target) - R|; for model_utility (R = 0) u >= F * u(target).
               Ties: better utility.
- max-utility: the best utility objective s.t. the forget objective reaches a bar: for
               forget_quality the p-value Q (forget_quality >= Q), for any other forget
               objective the retain model's value (it forgets at least as well as a model that
               never saw the forget set). Ties: better forget objective.
The forget objective is the sweep's first objective and the utility objective its second
(TOFU: forget_quality, model_utility; MUSE: forget_verbmem, model_utility; DUSK:
forget_specific, shared_knowledge); a third is ignored by these two rules, and a sweep with one
objective has only knee and weighted. Remaining ties go to the earlier trial and epoch.
Points that `unlearn-sweep confirm` re-ran on fresh seeds (HOME/confirmed.json) take part with
their fresh-seed means in place of the sweep's values; the record's info.confirmed says so."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from analysis import confirmed
from analysis.files import check_inside, write_text
from analysis.load import (
    Experiment,
    metric_columns,
    objective_keys,
    objective_value,
    params_of,
    trial_name,
)
from analysis.pareto import FQ_MU, pareto_mask, reference_point
from sweeps.experiment import best_dir, best_path, confirmed_path, openunlearning_path
from sweeps.objectives import BY_KEY
from unlearn_core.errors import UserError

RULES = ("knee", "max-forget", "max-utility", "weighted")


@dataclass(frozen=True)
class Rule:
    name: str
    min_utility_frac: float = 0.9  # max-forget: fraction of the target's model_utility
    min_forget_quality: float = 0.05  # max-utility: TOFU's "not distinguishable" p-value
    weights: tuple[float, ...] | None = None  # weighted: one per objective; None = equal

    def __post_init__(self) -> None:
        if self.name not in RULES:
            raise UserError(f"unknown rule {self.name!r}; accepted: {', '.join(RULES)}")
        if not 0 < self.min_utility_frac <= 1.5:
            raise UserError(
                f"--min-utility-frac is a fraction of the target's utility in "
                f"(0, 1.5], got {self.min_utility_frac}"
            )
        if not 0 <= self.min_forget_quality <= 1:
            raise UserError(
                f"--min-forget-quality is a p-value in [0, 1], got {self.min_forget_quality}"
            )
        if self.weights is not None and (
            any(not math.isfinite(w) or w < 0 for w in self.weights) or sum(self.weights) <= 0
        ):
            raise UserError(f"--weights must be finite, >= 0 and not all 0, got {self.weights}")


def _normalised(values: np.ndarray, directions: list[str], over: np.ndarray) -> np.ndarray:
    """n_j in [0, 1] with 1 the best value of `over` in objective j (1 where it is constant)."""
    sign = np.array([1.0 if d == "max" else -1.0 for d in directions])
    v, o = values * sign, over * sign
    lo, hi = o.min(axis=0), o.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return np.where(hi > lo, (v - lo) / span, 1.0)


def _ranked(cands: pd.DataFrame, *scores: np.ndarray) -> pd.DataFrame:
    """The rows best first: by the first score, ties broken by the next scores (all
    higher-is-better), then to the earlier trial and epoch."""
    cols = [f"_score{i}" for i in range(len(scores))]
    order = cands.assign(**dict(zip(cols, scores, strict=True))).sort_values(
        [*cols, "trial_index", "epoch"], ascending=[False] * len(cols) + [True, True], kind="stable"
    )
    return order.drop(columns=cols)


def _first_best(cands: pd.DataFrame, *scores: np.ndarray) -> pd.Series:
    return _ranked(cands, *scores).iloc[0]


def candidates(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The rows a rule chooses from: feasible evaluated epochs with finite objectives."""
    cands = rows[rows["status"] == "complete"]
    return cands[np.isfinite(cands[keys].to_numpy(dtype=float)).all(axis=1)]


def knee_order(rows: pd.DataFrame, keys: list[str], directions: list[str]) -> pd.DataFrame:
    """One method's Pareto front, closest to the knee first (the knee rule's pick first, the
    same ties); `confirm` reruns the first K."""
    cands = candidates(rows, keys)
    if cands.empty:
        return cands
    values = cands[keys].to_numpy(dtype=float)  # (N, M)
    on = pareto_mask(values, directions)
    front, fv = cands[on], values[on]
    n = _normalised(fv, directions, fv)  # (F, M)
    return _ranked(front, -np.sqrt(((1 - n) ** 2).sum(axis=1)))


def choose(
    rows: pd.DataFrame,
    keys: list[str],
    directions: list[str],
    rule: Rule,
    target_utility: float | None,
    retain_forget: float | None = None,
) -> pd.Series:
    """The row of one method's table that `rule` picks (see the module docstring).
    target_utility: the target model's value of the utility objective (keys[1]); retain_forget:
    the retain model's value of the forget objective (keys[0])."""
    method = rows["method"].iloc[0] if len(rows) else "(no rows)"
    cands = candidates(rows, keys)
    if cands.empty:
        raise UserError(f"{method}: no complete, feasible trial to export")
    values = cands[keys].to_numpy(dtype=float)  # (N, M)
    if rule.name == "knee":
        return knee_order(cands, keys, directions).iloc[0]
    if rule.name == "weighted":
        on = pareto_mask(values, directions)
        front, fv = cands[on], values[on]
        n = _normalised(fv, directions, fv)  # (F, M)
        w = np.array(rule.weights) if rule.weights is not None else np.ones(len(keys))
        if len(w) != len(keys):
            raise UserError(
                f"--weights gives {len(w)} weights for {len(keys)} objectives ({', '.join(keys)})"
            )
        return _first_best(front, n @ w)
    if len(keys) < 2:
        raise UserError(
            f"{method}: {rule.name} needs a forget and a utility objective (the "
            f"sweep's first two); this sweep optimises only {keys[0]}: use knee or "
            "weighted"
        )
    forget, utility = zip(keys[:2], directions[:2], strict=True)  # (key, direction) each
    if rule.name == "max-forget":
        ok = _utility_kept(cands, method, *utility, rule, target_utility)
        return _first_best(ok, _score(ok, *forget), _score(ok, *utility))
    ok = _forget_reached(cands, method, *forget, rule, retain_forget)
    return _first_best(ok, _score(ok, *utility), _score(ok, *forget))


def _score(rows: pd.DataFrame, key: str, direction: str) -> np.ndarray:
    """The objective as a higher-is-better score."""
    return rows[key].to_numpy(dtype=float) * (1.0 if direction == "max" else -1.0)


def _utility_kept(
    cands: pd.DataFrame, method: str, key: str, direction: str, rule: Rule, target: float | None
) -> pd.DataFrame:
    """max-forget's candidates: utility at least F of the target's, from the reference R."""
    if target is None:
        raise UserError(f"max-forget needs the target model's {key} (reference/target-*.json)")
    (worst,) = reference_point([key])
    bound = worst + rule.min_utility_frac * (target - worst)
    op = ">=" if direction == "max" else "<="
    ok = cands[cands[key] >= bound] if direction == "max" else cands[cands[key] <= bound]
    if ok.empty:
        best = _first_best(cands, _score(cands, key, direction))
        share = (
            f"x target {target:.4g}"
            if worst == 0
            else f"of the way from {worst:g} to target {target:.4g}"
        )
        raise UserError(
            f"{method}: no trial reaches {key} {op} {rule.min_utility_frac:g} {share} = "
            f"{bound:.4g}; closest: trial {trial_name(best)} epoch {int(best['epoch'])} with "
            f"{key} {best[key]:.4g}"
        )
    return ok


def _forget_reached(
    cands: pd.DataFrame, method: str, key: str, direction: str, rule: Rule, retain: float | None
) -> pd.DataFrame:
    """max-utility's candidates: forget_quality >= Q, or any other forget objective at least as
    good as the retain model's."""
    if key == FQ_MU[0]:  # compared as the objective (log10), which confirm's means replace
        ok = cands[cands[key] >= BY_KEY[key].fn(rule.min_forget_quality)]
        bar, shown = f"forget_quality >= {rule.min_forget_quality:g}", "forget_quality"
    else:
        if retain is None:
            raise UserError(
                f"max-utility needs the retain model's {key} as the bar to reach "
                "(reference/retain-*.json)"
            )
        ok = cands[cands[key] >= retain] if direction == "max" else cands[cands[key] <= retain]
        op = ">=" if direction == "max" else "<="
        bar, shown = f"{key} {op} {retain:.4g} (the retain model's)", key
    if ok.empty:
        best = _first_best(cands, _score(cands, key, direction))
        raise UserError(
            f"{method}: no trial reaches {bar}; closest: trial {trial_name(best)} epoch "
            f"{int(best['epoch'])} with {shown} {best[shown]:.3g}"
        )
    return ok


def _plain(v):
    """numpy scalars -> Python numbers so YAML and JSON hold plain values."""
    return v.item() if isinstance(v, np.generic) else v


def record(
    exp: Experiment,
    row: pd.Series,
    rule: Rule,
    keys: list[str],
    metric_names: list[str],
    confirmation: dict | None = None,
) -> dict:
    """The exported document: `job`, the JobConfig the trial ran (built by the sweep's own
    make_job, stopped after the chosen epoch), which `unlearn --config` reads back with
    job_from_dict; and `info`, what the sweep measured and how the row was chosen (with
    `confirmation`, see `_confirmation`, under `confirmed`)."""
    doc = {
        "job": exported_job(exp, row),
        "info": {
            "trial": str(row["trial_id"]),
            "epoch": int(row["epoch"]),
            "objectives": {k: float(row[k]) for k in keys},
            "metrics": {m: float(row[m]) for m in metric_names if pd.notna(row.get(m))},
            "rule": {
                k: _plain(v)
                for k, v in asdict(rule).items()
                if k == "name" or _rule_uses(rule.name, k, keys)
            },
            "optimizer_steps": _steps(row),
            "version": str(row["run_version"])
            if isinstance(row.get("run_version"), str)
            else str(exp.manifest.get("version")),
        },
    }
    if confirmation is not None:
        doc["info"]["confirmed"] = confirmation
    return doc


def _confirmation(
    home: Path, chosen_from: pd.DataFrame, row: pd.Series, table: pd.DataFrame, keys: list[str]
) -> dict:
    """info.confirmed: how many points took part with their fresh-seed means, and the chosen
    point's fresh-seed statistics per objective (None if it was not confirmed)."""
    mine = table[(table["trial_id"] == row["trial_id"]) & (table["epoch"] == row["epoch"])]
    point = None
    if bool(row["confirmed"]) and len(mine):
        c = mine.iloc[0]
        point = {
            "seeds": [int(x) for x in c["seeds"]],
            "objectives": {
                k: {x: _none(c[f"{k}_{x}"]) for x in ("mean", "std", "low", "high")} for k in keys
            },
        }
    return {
        "means_used": int(chosen_from["confirmed"].sum()),
        "file": confirmed_path(home).name,
        "point": point,
    }


def _none(v) -> float | None:
    return None if pd.isna(v) else float(v)


def _steps(row: pd.Series) -> int | None:
    """Optimizer steps the trial ran up to the chosen epoch (None in results that lack them)."""
    steps = row.get("run_optimizer_steps")
    return int(steps) if steps is not None and pd.notna(steps) else None


def exported_job(exp: Experiment, row: pd.Series) -> dict:
    """The row's job as job_to_dict writes it. The trials' shared reference file is left out:
    a rerun finds (or computes) the same reference from the retain model."""
    from sweeps.config import make_job, sweep_from_dict
    from unlearn_core.job import job_to_dict

    sweep = sweep_from_dict(exp.sweeps[row["method"]], f"{exp.home}: sweep {row['method']}")
    seeds = row["seeds"] if isinstance(row["seeds"], list) else [sweep.seed]
    job = make_job(sweep, {k: _plain(v) for k, v in params_of(row).items()}, int(seeds[0]))
    epoch = int(row["epoch"])
    # an earlier epoch of a longer run: same schedule, stop after this epoch
    train = replace(job.train, stop_after=epoch if epoch < job.train.epochs else None)
    return job_to_dict(replace(job, train=train))


def _rule_uses(rule: str, field: str, keys: list[str]) -> bool:
    if field == "min_forget_quality" and keys[0] != FQ_MU[0]:
        return False  # max-utility's bar is then the retain model's value, not Q
    return {
        "max-forget": "min_utility_frac",
        "max-utility": "min_forget_quality",
        "weighted": "weights",
    }.get(rule) == field


def select(exp: Experiment, rows: pd.DataFrame, rule: Rule) -> list[dict]:
    """One record per method of the experiment, or a UserError before anything is written."""
    from sweeps.objectives import OBJECTIVES

    derived = {o.key for o in OBJECTIVES.values() if o.key != o.needs}
    table = confirmed.table(exp.home, exp.name)
    out = []
    for method, sweep in exp.sweeps.items():
        part = rows[(rows["experiment"] == exp.name) & (rows["method"] == method)]
        if part.empty:
            raise UserError(f"{method}: no trial in {exp.home} yet")
        keys, dirs = objective_keys(sweep)
        target = objective_value(exp.target, keys[1]) if exp.target and len(keys) > 1 else None
        retain = objective_value(exp.retain, keys[0]) if exp.retain else None
        mine = table[table["method"] == method]
        # confirmed points compete with their fresh-seed means (the sweep's one seed is luck)
        chosen_from = confirmed.means(part, mine, keys)
        row = choose(chosen_from, keys, dirs, rule, target, retain)
        metric_names = [m for m in metric_columns(part) if m not in derived]
        confirmation = (
            _confirmation(exp.home, chosen_from, row, mine, keys)
            if chosen_from["confirmed"].any()
            else None
        )
        # the record keeps the sweep's own values; the confirmed ones are under info.confirmed
        out.append(record(exp, part.loc[row.name], rule, keys, metric_names, confirmation))
    return out


def targets(exp: Experiment, records: list[dict]) -> list[Path]:
    """What `write` writes into: HOME/best and its <method>.yaml and .json."""
    files = [
        best_path(exp.home, r["job"]["method"], ext) for r in records for ext in (".yaml", ".json")
    ]
    return [best_dir(exp.home), *files]


def write(exp: Experiment, records: list[dict], also: dict[Path, str] | None = None) -> list[Path]:
    """HOME/best/<method>.yaml and .json, each written under a temporary name and renamed (their
    paths returned), then the files of `also` (open-unlearning's, from openunlearning_files)."""
    also = also or {}
    check_inside(exp.home, [*targets(exp, records), *also])
    paths = []
    for r in records:
        method = r["job"]["method"]
        text = yaml.safe_dump(r, sort_keys=False)
        paths.append(write_text(best_path(exp.home, method, ".yaml"), text))
        paths.append(
            write_text(best_path(exp.home, method, ".json"), json.dumps(r, indent=2) + "\n")
        )
    for path, text in also.items():
        write_text(path, text)
    return paths


def openunlearning_files(exp: Experiment, records: list[dict]) -> dict[Path, str]:
    """HOME/best/<method>.openunlearning.yaml -> each record's open-unlearning experiment file, or
    a UserError for a method or benchmark open-unlearning has not."""
    from analysis.openunlearning import openunlearning_yaml

    return {
        openunlearning_path(exp.home, r["job"]["method"]): openunlearning_yaml(r) for r in records
    }
