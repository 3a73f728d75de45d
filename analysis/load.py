"""Experiment folders -> one tidy table: a row per trial and evaluated epoch (plus one per failed,
diverged or not-yet-reporting trial), joined with the Optuna journal. Reads files; never ray."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sweeps import experiment as folder
from sweeps.experiment import EPOCH_OF, is_epoch_point, load_study, read_manifest
from sweeps.objectives import BY_KEY, OBJECTIVES
from sweeps.rows import EVENTS, IDENTITY, SECTIONS
from unlearn_core.errors import UserError

log = logging.getLogger(__name__)
# Row status: an evaluated epoch is "complete" (feasible) or "stopped" (below the utility floor,
# infeasible); a trial that ended without objectives adds one "diverged" or "failed" row; a trial
# with no result yet is one "running" row. trial_status is the same word for the whole trial.
STATUSES = ("complete", "stopped", "diverged", "failed", "running")
# The loader's own numeric columns: identifiers and counts, not metrics. The row's sections
# (sweeps/rows.py) give the rest: params as p_<name>, run (bookkeeping) as run_<name>, and the
# objectives and metrics under their own names.
OWN_COLUMNS = ("number", "epoch", "epochs", "retries", "trial_index", "is_default")
# run fields the loader lifts into columns of its own (identity), not repeated as run_<name>
LIFTED = ("epoch", "seeds", "failure")


@dataclass(frozen=True)
class Experiment:
    """One folder: its manifest, one sweep-settings dict per method, and the reference models."""

    home: Path
    manifest: dict
    sweeps: dict[str, dict]  # method -> SweepConfig fields
    target: dict | None  # target model's aggregate metrics (before unlearning)
    retain: dict | None  # retain model's aggregate metrics (forget_quality 1 by definition)

    @property
    def name(self) -> str:
        return self.home.name


def open_experiment(home: str | Path) -> Experiment:
    home = Path(home).expanduser().absolute()
    manifest = read_manifest(home)
    if not manifest["sweeps"]:
        raise UserError(f"{home} holds no sweep yet")
    sweeps = {s["method"]: s for s in manifest["sweeps"]}
    first = manifest["sweeps"][0]
    bench = (first["source"]["benchmark"], first["source"]["split"])
    return Experiment(
        home,
        manifest,
        sweeps,
        _read_json(folder.model_metrics_path(home, "target", *bench)),
        _read_json(folder.model_metrics_path(home, "retain", *bench)),
    )


def _read_json(path: Path) -> dict | None:
    """A reference model's metrics as the sweep writes them (names -> numbers), or None."""
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # ValueError: not JSON or not UTF-8
        doc = None
    if not isinstance(doc, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in doc.values()
    ):
        raise UserError(
            f"{path} is damaged (not a JSON object of metric values); remove it to analyse "
            "without that reference model"
        )
    return doc


def objective_keys(sweep: dict) -> tuple[list[str], list[str]]:
    """(keys, directions "max"/"min") of a sweep's objectives, in the manifest's order."""
    unknown = [n for n in sweep["objectives"] if n not in OBJECTIVES]
    if unknown:
        raise UserError(f"unknown objective {unknown[0]!r}; accepted: {', '.join(OBJECTIVES)}")
    objs = [OBJECTIVES[n] for n in sweep["objectives"]]
    return [o.key for o in objs], [o.mode for o in objs]


def objective_value(metrics: dict, key: str) -> float | None:
    """The objective `key` of a metrics dict (a reference model's), derived from its raw metric
    as the sweep derives it; None where the metric is missing or not finite."""
    o = BY_KEY[key]
    value = metrics.get(o.needs)
    if not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(o.fn(value))


def _events(path: Path) -> list[dict]:
    """The rows ResultsLog wrote. A line that is not JSON is refused (the file is damaged) unless
    it is the last (mid-write while a sweep runs); a JSON line that is not a row ResultsLog writes
    is skipped, and the count logged (with those in the flat format of an older version)."""
    if not path.is_file():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is damaged: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    events, skipped, flat = [], 0, 0
    for i, line in enumerate(lines):
        try:
            ev = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            # the last line may be mid-write while a sweep runs; anything else is damage
            if i != len(lines) - 1:
                raise UserError(f"{path}: line {i + 1} is not JSON") from None
            continue
        if _is_row(ev):
            events.append(ev)
        else:
            skipped += 1
            flat += _is_flat_row(ev)
    if skipped:
        log.warning(
            "%s: skipped %d line(s) that are not result rows%s",
            path,
            skipped,
            f" ({flat} in the flat format of unlearn-sweep before sectioned rows: rerun the "
            "sweep with this version to analyse them)"
            if flat
            else "",
        )
    return events


NUMBER_FIELDS = ("diverged", "utility_violation", "utility_floor", "time")


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _is_flat_row(ev: object) -> bool:
    """A row of an older version: the metrics, objectives and bookkeeping side by side."""
    return (
        isinstance(ev, dict)
        and ev.get("event") in EVENTS
        and isinstance(ev.get("trial_id"), str)
        and not set(ev) <= {*IDENTITY, *SECTIONS}
    )


def _flat(value: object) -> bool:
    """A parameter value: a scalar, or a list of scalars (RMU's trainable_layers)."""
    scalar = (int, float, str)
    return isinstance(value, scalar) or (
        isinstance(value, list) and all(isinstance(v, scalar) for v in value)
    )


def _is_row(ev: object) -> bool:
    """A row as sweeps/callbacks.py's ResultsLog writes it (sweeps/rows.py): a string trial id, a
    known event, nothing outside the sections, each a JSON object; flat params, numeric
    objectives and metrics, and a whole-number epoch on a result that did not diverge."""
    if not isinstance(ev, dict) or not isinstance(ev.get("trial_id"), str):
        return False
    if ev.get("event") not in EVENTS or not set(ev) <= {*IDENTITY, *SECTIONS}:
        return False
    if not all(isinstance(ev.get(s, {}), dict) for s in SECTIONS):
        return False
    params, objectives, metrics, run = (ev.get(s, {}) for s in SECTIONS)
    if not all(_flat(v) for v in params.values()):
        return False
    if not all(_number(v) for v in (*objectives.values(), *metrics.values())):
        return False
    if any(k in run and not _number(run[k]) for k in NUMBER_FIELDS):
        return False
    if any(k in run and not isinstance(run[k], str) for k in ("error", "failure")):
        return False
    seeds = run.get("seeds", [])
    if not isinstance(seeds, list) or not all(_number(s) for s in seeds):
        return False
    epoch = run.get("epoch")
    return (
        ev["event"] != "result"
        or bool(run.get("diverged"))
        or (_number(epoch) and float(epoch).is_integer())
    )


def _trials_from_log(events: list[dict]) -> dict[str, dict]:
    """trial_id -> {params, rows (last per epoch), end ("complete"|"error"|None), error}."""
    trials: dict[str, dict] = {}
    for ev in events:
        t = trials.setdefault(
            ev["trial_id"], {"params": {}, "rows": {}, "end": None, "error": None, "retries": 0}
        )
        t["params"] = ev.get("params") or t["params"]
        kind, run = ev["event"], ev.get("run", {})
        if kind == "result":
            key = "diverged" if run.get("diverged") else run.get("epoch")
            t["rows"][key] = ev  # a retry or resume repeats epochs: the last one stands
        elif kind == "complete":
            t["end"] = "complete"
        elif kind == "error":
            t["end"], t["error"] = "error", run.get("error", "error")
        elif kind == "retry":
            t["retries"] += 1
            t["end"] = None
    return trials


def _same_params(a: dict, b: dict) -> bool:
    keys = set(a) & set(b)
    return bool(keys) and all(
        math.isclose(float(a[k]), float(b[k]), rel_tol=1e-9)
        if isinstance(a[k], int | float)
        else a[k] == b[k]
        for k in keys
    )


def _match_optuna(trials: dict[str, dict], study) -> list:
    """Attach each Optuna trial to its Ray trial (user attr ray_trial_id, else equal params for
    trials still running); returns the Optuna trials no Ray trial reported."""
    if study is None:
        return []
    left = []
    for ot in study.get_trials(deepcopy=False):
        if is_epoch_point(ot):  # an earlier epoch of a Ray trial: its own row is in the log
            if ot.user_attrs[EPOCH_OF] not in trials:
                left.append(ot)  # the log lost that trial: keep the study's values
            continue
        rid = ot.user_attrs.get("ray_trial_id")
        if rid is None:
            rid = next(
                (
                    k
                    for k, t in trials.items()
                    if "optuna" not in t and _same_params(t["params"], ot.params)
                ),
                None,
            )
        if rid is not None and rid in trials:
            trials[rid]["optuna"] = ot
        else:
            left.append(ot)
    return left


def _trial_status(t: dict) -> str:
    ot = t.get("optuna")
    rows = [r for k, r in t["rows"].items() if k != "diverged"]
    if "diverged" in t["rows"]:
        return "diverged"
    if t["end"] == "error" or (ot is not None and ot.state.name == "FAIL"):
        return "failed"
    if rows and _violation(rows[-1]) > 0:
        return "stopped"
    if t["end"] == "complete" or (ot is not None and ot.state.name == "COMPLETE"):
        return "complete"
    return "running"


def _violation(ev: dict) -> float:
    """How far an evaluated epoch fell below the utility floor (> 0: infeasible)."""
    return ev.get("run", {}).get("utility_violation", -1.0)


def _row(
    exp: Experiment,
    method: str,
    trial_id: str,
    t: dict,
    status: str,
    ev: dict | None,
    trial_status: str,
) -> dict:
    ot = t.get("optuna")
    params = t["params"] or (dict(ot.params) if ot is not None else {})
    ev = ev or {}
    run = ev.get("run", {})
    failure = (
        run.get("failure")
        or t.get("error")
        or (ot.user_attrs.get("failure") if ot is not None else None)
    )
    row = {
        "experiment": exp.name,
        "method": method,
        "trial_id": trial_id,
        "number": ot.number if ot is not None else np.nan,
        "epoch": run.get("epoch", np.nan),
        "epochs": params.get("epochs", np.nan),
        "status": status,
        "trial_status": trial_status,
        "failure": failure if trial_status in ("failed", "diverged") else None,
        "retries": t.get("retries", 0),
        "seeds": run.get("seeds"),
    }
    row["params"] = dict(params)  # as sampled, with their types (ints stay ints)
    row |= {f"p_{k}": v for k, v in params.items()}
    row |= ev.get("metrics", {}) | ev.get("objectives", {})
    row |= {f"run_{k}": v for k, v in run.items() if k not in LIFTED}
    return row


def method_rows(exp: Experiment, method: str) -> list[dict]:
    trials = _trials_from_log(_events(folder.results_path(exp.home, method)))
    left = _match_optuna(trials, load_study(exp.home, method))
    rows = []
    for trial_id, t in trials.items():
        status = _trial_status(t)
        for key, ev in t["rows"].items():
            if key == "diverged":
                rows.append(_row(exp, method, trial_id, t, "diverged", ev, status))
            else:
                feasible = _violation(ev) <= 0
                rows.append(
                    _row(
                        exp, method, trial_id, t, "complete" if feasible else "stopped", ev, status
                    )
                )
        if status in ("failed", "running") and not (status == "running" and t["rows"]):
            rows.append(_row(exp, method, trial_id, t, status, None, status))
    keys, _ = objective_keys(exp.sweeps[method])
    for ot in left:  # in the journal only: lost before any report, or not yet reporting
        t = {"params": {}, "rows": {}, "end": None, "optuna": ot}
        ev = None
        if ot.state.name == "COMPLETE":  # its result lines are missing: keep Optuna's values
            violation = ot.constraints.get("utility_floor", -1.0)
            ev = {
                "objectives": dict(zip(keys, ot.values, strict=True)),
                "run": {"utility_violation": violation, "epoch": ot.user_attrs.get("epoch")},
            }
            status = "complete" if violation <= 0 else "stopped"
        else:
            status = "failed" if ot.state.name == "FAIL" else "running"
        rows.append(_row(exp, method, "", t, status, ev, status))
    return rows


def _objective_columns(df: pd.DataFrame) -> pd.DataFrame:
    """Every objective's key, derived from its metric where a sweep did not optimise it."""
    for o in OBJECTIVES.values():
        if o.needs in df and o.key not in df:
            df[o.key] = [o.fn(v) if np.isfinite(v) else np.nan for v in df[o.needs]]
    return df


def _trial_index(df: pd.DataFrame) -> pd.Series:
    """1-based order in which each (experiment, method)'s trials were sampled: Optuna's number,
    then trials Optuna does not know in the order they first reported."""
    key = df["trial_id"].where(df["trial_id"] != "", "#" + df["number"].astype(str))
    first = (
        df.assign(_key=key, _pos=np.arange(len(df)))
        .groupby(["experiment", "method", "_key"], sort=False)
        .agg(number=("number", "min"), pos=("_pos", "min"))
        .reset_index()
    )
    first = first.sort_values(["number", "pos"], na_position="last")
    first["trial_index"] = first.groupby(["experiment", "method"]).cumcount() + 1
    idx = first.set_index(["experiment", "method", "_key"])["trial_index"]
    return pd.Series(
        idx.loc[list(zip(df["experiment"], df["method"], key, strict=True))].values, index=df.index
    )


def load(homes: list[str | Path]) -> tuple[pd.DataFrame, list[Experiment]]:
    """All rows of all methods of all folders; `series` names a curve: the method, or
    `<folder>/<method>` when several folders are compared."""
    exps = [open_experiment(h) for h in homes]
    names = [e.name for e in exps]
    if len(set(names)) != len(names):
        raise UserError(
            f"two experiment folders share the name {names[0]!r}; compare folders "
            "with distinct names"
        )
    rows = [r for e in exps for m in e.sweeps for r in method_rows(e, m)]
    df = pd.DataFrame(rows)
    if df.empty:
        return df, exps
    df = _objective_columns(df)
    df["series"] = df["method"] if len(exps) == 1 else df["experiment"] + "/" + df["method"]
    df["trial_index"] = _trial_index(df)
    df["is_default"] = _is_default(df, exps)
    return df.reset_index(drop=True), exps


def _is_default(df: pd.DataFrame, exps: list[Experiment]) -> pd.Series:
    """Rows of the trial that ran the method's reference defaults (manifest "defaults")."""
    defaults = {(e.name, m): p for e in exps for m, p in e.manifest.get("defaults", {}).items()}
    out = []
    for _, r in df.iterrows():
        d = defaults.get((r["experiment"], r["method"]))
        out.append(d is not None and _same_params(params_of(r), d))
    return pd.Series(out, index=df.index, dtype=bool)


def params_of(row: pd.Series) -> dict:
    """The sampled parameters of a row, as sampled (the p_ columns turn ints into floats where
    another method lacks the parameter)."""
    return dict(row["params"])


def trial_name(row: pd.Series) -> str:
    """Ray's trial id, or the Optuna number for a trial Ray never reported."""
    return row["trial_id"] or f"#{int(row['number'])}"


def metric_columns(df: pd.DataFrame) -> list[str]:
    """Aggregate metrics (and objectives) of the rows: the numeric columns of their metrics and
    objectives sections, which are neither the loader's own nor a params (p_) or run (run_)
    column."""
    return [
        c
        for c in df.columns
        if c not in OWN_COLUMNS
        and not c.startswith(("p_", "run_"))
        and pd.api.types.is_numeric_dtype(df[c])
        and df[c].dtype != bool
    ]
