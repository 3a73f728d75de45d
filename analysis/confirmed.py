"""`confirm`'s record, `HOME/confirmed.json`, and its one owner: the record built from fresh-seed
runs (`merged`), read for analyze and export (`read`, `table`), and the statistics of a point's
runs: mean, sample std, n and the 95% Student-t interval of the mean,
mean +- t(0.975, n - 1) * std / sqrt(n). Never ray (sweeps/confirm.py runs the trials and
writes the record)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sweeps.experiment import confirmed_path
from unlearn_core.errors import UserError

LEVEL = 0.95  # of the interval
# Fresh seeds of a point: the sweep's seed + SEED_OFFSET + j, j = 0, 1, ...; a sweep's own seeds
# are its seed + i for i < its `seeds` (< SEED_OFFSET), so a confirmation never reruns them.
SEED_OFFSET = 1000
STATS = ("sweep", "mean", "std", "n", "low", "high")


@dataclass(frozen=True)
class Point:
    """A point of a sweep: the trial's sampled params evaluated at `epoch` (reproduced by the same
    params with TrainConfig.stop_after = epoch), and what the sweep reported there."""

    method: str
    trial: str
    epoch: int
    params: dict
    why: tuple[str, ...]  # "knee #1" (rank by distance to the knee), "exported", "given"
    sweep: dict  # {"objectives": {...}, "metrics": {...}} as the sweep reported them


def stats(values: list[float], sweep: float | None) -> dict:
    """The sweep's reported value beside the mean, sample std (ddof 1), n and the LEVEL Student-t
    interval of the mean over the finite `values` (std and interval None below 2 values)."""
    from scipy.stats import t

    v = np.array([x for x in values if math.isfinite(x)], dtype=float)
    out = {"sweep": sweep, "mean": None, "std": None, "n": len(v), "low": None, "high": None}
    if len(v) == 0:
        return out
    out["mean"] = float(v.mean())
    if len(v) > 1:
        std = float(v.std(ddof=1))
        half = float(t.ppf(0.5 + LEVEL / 2, len(v) - 1)) * std / math.sqrt(len(v))
        out |= {"std": std, "low": out["mean"] - half, "high": out["mean"] + half}
    return out


def summarise(point: dict) -> dict:
    """The point with `objectives` and `metrics` (name -> stats) computed from its runs."""
    done = [r for r in point["runs"] if "failure" not in r]
    out = dict(point)
    for section in ("objectives", "metrics"):
        names = list(dict.fromkeys(k for r in done for k in r[section]))
        sweep = point["sweep"].get(section, {})
        out[section] = {
            k: stats([r[section][k] for r in done if k in r[section]], sweep.get(k)) for k in names
        }
    return out


def read(home: Path) -> dict:
    """The record: {"seed_offset", "methods": {method: {"points": [point, ...]}}}; an empty one
    when `confirm` never ran. A file that is not what `confirm` writes is refused in one line."""
    path = confirmed_path(home)
    if not path.is_file():
        return {"seed_offset": SEED_OFFSET, "methods": {}}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is damaged ({e}); remove it and run confirm again") from None
    methods = doc.get("methods") if isinstance(doc, dict) else None
    ok = isinstance(methods, dict) and all(
        isinstance(m, dict)
        and isinstance(m.get("points"), list)
        and all(_is_point(p) for p in m["points"])
        for m in methods.values()
    )
    if not ok:
        raise UserError(f"{path} is not a confirm record; remove it and run confirm again")
    return doc


def _is_point(p: object) -> bool:
    return (
        isinstance(p, dict)
        and isinstance(p.get("trial"), str)
        and isinstance(p.get("epoch"), int)
        and isinstance(p.get("runs"), list)
        and isinstance(p.get("objectives"), dict)
        and all(isinstance(s, dict) and set(STATS) <= set(s) for s in p["objectives"].values())
    )


def table(home: Path, experiment: str) -> pd.DataFrame:
    """One row per confirmed point: experiment, method, trial_id, epoch, n (fresh seeds with
    objectives), seeds, and per objective key k: k_sweep, k_mean, k_std, k_low, k_high."""
    rows = []
    for method, m in read(home)["methods"].items():
        for p in m["points"]:
            row = {
                "experiment": experiment,
                "method": method,
                "trial_id": p["trial"],
                "epoch": p["epoch"],
                "n": max((s["n"] for s in p["objectives"].values()), default=0),
                "seeds": [r["seed"] for r in p["runs"] if "failure" not in r],
            }
            for k, s in p["objectives"].items():
                row |= {f"{k}_{x}": np.nan if s[x] is None else s[x] for x in STATS if x != "n"}
            rows.append(row)
    cols = ["experiment", "method", "trial_id", "epoch", "n", "seeds"]
    return pd.DataFrame(rows, columns=None if rows else cols)


def means(rows: pd.DataFrame, confirmed: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """`rows` with each objective of `keys` replaced by its fresh-seed mean on the rows that were
    confirmed (n >= 1), and a bool column `confirmed` marking them."""
    out = rows.assign(confirmed=False)
    for _, c in confirmed[confirmed["n"] >= 1].iterrows():
        at = (
            (out["experiment"] == c["experiment"])
            & (out["method"] == c["method"])
            & (out["trial_id"] == c["trial_id"])
            & (out["epoch"] == c["epoch"])
        )
        if not at.any() or not all(pd.notna(c.get(f"{k}_mean")) for k in keys):
            continue
        for k in keys:
            out.loc[at, k] = c[f"{k}_mean"]
        out.loc[at, "confirmed"] = True
    return out


def _entries(record: dict, method: str) -> dict[tuple[str, int], dict]:
    points = record["methods"].get(method, {"points": []})["points"]
    return {(p["trial"], p["epoch"]): p for p in points}


def seen(record: dict, method: str, p: Point) -> set[int]:
    entry = _entries(record, method).get((p.trial, p.epoch))
    return {r["seed"] for r in entry["runs"]} if entry else set()


def merged(record: dict, method: str, points: list[Point], runs: list) -> dict:
    """The record with the method's points added (earlier points and runs kept) and every
    point's statistics computed again from its runs."""
    record = {
        "seed_offset": SEED_OFFSET,
        "interval": f"{LEVEL:.0%} Student t: mean +- t(0.975, n-1) * std / sqrt(n)",
        "methods": dict(record["methods"]),
    }
    entries = _entries(record, method)
    for p in points:
        entry = entries.get((p.trial, p.epoch))
        if entry is None:
            entry = entries[(p.trial, p.epoch)] = {
                "trial": p.trial,
                "epoch": p.epoch,
                "params": p.params,
                "why": list(p.why),
                "sweep": p.sweep,
                "runs": [],
            }
        else:
            entry["why"] = list(dict.fromkeys([*entry["why"], *p.why]))
    for p, run in runs:
        entry = entries[(p.trial, p.epoch)]
        if any(r["seed"] == run["seed"] for r in entry["runs"]):
            continue  # one run per seed: a seed the record holds is never counted twice
        entry["runs"] = sorted([*entry["runs"], run], key=lambda r: r["seed"])
    record["methods"][method] = {"points": [summarise(e) for e in entries.values()]}
    return record


def lines(home: Path) -> list[str]:
    """The record for people: per point, each objective's sweep value and fresh-seed mean +- the
    interval's half width."""
    out = []
    for method, m in read(home)["methods"].items():
        for p in m["points"]:
            parts = []
            for k, s in p["objectives"].items():
                fresh = "no finite run" if s["mean"] is None else f"{s['mean']:.4g}"
                if s["low"] is not None:
                    fresh += f" +- {(s['high'] - s['low']) / 2:.3g}"
                sweep = "-" if s["sweep"] is None else f"{s['sweep']:.4g}"
                parts.append(f"{k} sweep {sweep}, fresh {fresh} (n {s['n']})")
            failed = sum("failure" in r for r in p["runs"])
            tail = f"; {failed} run(s) diverged" if failed else ""
            out.append(
                f"{method} trial {p['trial']} epoch {p['epoch']} ({', '.join(p['why'])}): "
                + "; ".join(parts)
                + tail
            )
    return out
