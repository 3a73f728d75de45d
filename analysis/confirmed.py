"""`confirm`'s record, `HOME/confirmed.json`, read for analyze and export, and the statistics of a
point's fresh-seed runs: mean, sample std, n and the 95% Student-t interval of the mean,
mean +- t(0.975, n - 1) * std / sqrt(n). Reads files; never ray (sweeps/confirm.py writes it)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from sweeps.experiment import confirmed_path
from unlearn_core.errors import UserError

LEVEL = 0.95  # of the interval
# Fresh seeds of a point: the sweep's seed + SEED_OFFSET + j, j = 0, 1, ...; a sweep's own seeds
# are its seed + i for i < its `seeds` (< SEED_OFFSET), so a confirmation never reruns them.
SEED_OFFSET = 1000
STATS = ("sweep", "mean", "std", "n", "low", "high")


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


def read(home) -> dict:
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


def table(home, experiment: str) -> pd.DataFrame:
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
