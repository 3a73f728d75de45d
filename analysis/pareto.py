"""Pareto fronts (numpy, any number of objectives and directions) and the hypervolume of 1 to 3
objectives against a fixed, stated reference point per objective (Objective.reference)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from sweeps.objectives import DEFAULTS, LOG10_FQ_FLOOR, OBJECTIVES

# Each objective's hypervolume reference (its worst value) is in its record, sweeps/objectives.py.
REFERENCE = {o.key: o.reference for o in OBJECTIVES.values()}
FQ_MU = tuple(OBJECTIVES[n].key for n in DEFAULTS["tofu"])  # TOFU's default trade-off, both max


def reference_point(keys: Sequence[str], floor: float = LOG10_FQ_FLOOR) -> list[float]:
    """The hypervolume reference of the objective keys, with `floor` for log10 FQ."""
    missing = [k for k in keys if k not in REFERENCE]
    assert not missing, f"no objective reports {missing} (sweeps/objectives.py)"
    return [floor if k == FQ_MU[0] else REFERENCE[k] for k in keys]


def _as_minimized(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    assert values.ndim == 2 and values.shape[1] == len(directions), (
        f"values {values.shape} need one direction per column, got {list(directions)}"
    )
    sign = []
    for d in directions:
        assert d in ("max", "min", "maximize", "minimize"), f"unknown direction {d!r}"
        sign.append(-1.0 if d.startswith("max") else 1.0)
    return values * np.array(sign)


def pareto_mask(values: np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """(N, M) objective values -> (N,) bool: True where no other row is at least as good in every
    objective and strictly better in one. Rows with a non-finite value are never on the front;
    duplicates of a front point are all on it (as in Optuna's best_trials)."""
    v = _as_minimized(values, directions)  # (N, M), lower is better
    finite = np.isfinite(v).all(axis=1)
    mask = np.zeros(len(v), dtype=bool)
    w = v[finite]
    for i, point in enumerate(w):
        dominated = ((w <= point).all(axis=1) & (w < point).any(axis=1)).any()
        mask[np.flatnonzero(finite)[i]] = not dominated
    return mask


def front(
    df: pd.DataFrame, keys: Sequence[str], directions: Sequence[str], by: str | None = "series"
) -> pd.Series:
    """Bool per row: on the Pareto front of the feasible evaluated rows (status complete) of its
    group (`by`, e.g. series = method), or across all rows with by=None."""
    out = pd.Series(False, index=df.index)
    ok = df[df["status"] == "complete"]
    groups = [(None, ok)] if by is None else ok.groupby(by, sort=False)
    for _, g in groups:
        out.loc[g.index] = pareto_mask(g[list(keys)].to_numpy(dtype=float), directions)
    return out


def hypervolume_2d(
    values: np.ndarray, directions: Sequence[str], reference: Sequence[float]
) -> float:
    """Area dominated by the points and bounded by the reference point (sort and sum). Points not
    strictly better than the reference in both objectives add nothing."""
    v = _as_minimized(values, directions)  # (N, 2), lower is better
    ref = _as_minimized(np.asarray([reference], dtype=float), directions)[0]
    assert v.shape[1] == 2, "hypervolume_2d takes two objectives"
    v = v[np.isfinite(v).all(axis=1) & (v < ref).all(axis=1)]
    v = v[np.lexsort((v[:, 1], v[:, 0]))]  # by the first objective, best first
    area, best_second = 0.0, ref[1]
    for a, b in v:
        if b < best_second:  # a point not dominated by the ones before it adds a slab
            area += (ref[0] - a) * (best_second - b)
            best_second = b
    return float(area)


def hypervolume(values: np.ndarray, directions: Sequence[str], reference: Sequence[float]) -> float:
    """Volume dominated by the points and bounded by the reference point, for 1 to 3 objectives.
    Values worse than the reference are clipped to it, so they add nothing."""
    v = _as_minimized(values, directions)  # (N, M), lower is better
    ref = _as_minimized(np.asarray([reference], dtype=float), directions)[0]
    assert 1 <= v.shape[1] <= 3, f"hypervolume takes 1 to 3 objectives, got {v.shape[1]}"
    v = np.minimum(v[np.isfinite(v).all(axis=1)], ref)
    v = v[(v < ref).all(axis=1)]
    if v.shape[1] == 3:  # only the front adds volume; fewer points for the slicing below
        v = v[pareto_mask(v, ("min",) * 3)]
    return _volume(v, ref)


def _volume(v: np.ndarray, ref: np.ndarray) -> float:
    """Minimised points, all strictly better than `ref`: 1-D length, 2-D sort and sum, 3-D as
    slabs between consecutive values of the last objective times the 2-D area below each."""
    if len(v) == 0:
        return 0.0
    if v.shape[1] == 1:
        return float(ref[0] - v[:, 0].min())
    if v.shape[1] == 2:
        return hypervolume_2d(v, ("min", "min"), ref)
    v = v[np.argsort(v[:, -1], kind="stable")]
    tops = np.append(v[1:, -1], ref[-1])
    return float(
        sum(
            (top - v[i, -1]) * _volume(v[: i + 1, :-1], ref[:-1])
            for i, top in enumerate(tops)
            if top > v[i, -1]
        )
    )


def fq_mu_hypervolume(
    log10_fq: np.ndarray, utility: np.ndarray, floor: float = LOG10_FQ_FLOOR
) -> float:
    """Hypervolume of (log10 forget quality clipped at `floor`, model utility), both maximised,
    against the reference point (floor, 0)."""
    pts = np.column_stack(
        [np.maximum(np.asarray(log10_fq, dtype=float), floor), np.asarray(utility, dtype=float)]
    )
    return hypervolume_2d(pts, ("max", "max"), (floor, 0.0))


def hypervolume_curve(
    df: pd.DataFrame,
    floor: float = LOG10_FQ_FLOOR,
    keys: Sequence[str] = FQ_MU,
    directions: Sequence[str] = ("max", "max"),
) -> pd.DataFrame:
    """Per series: the hypervolume in `keys` (reference_point(keys, floor)) of the feasible rows
    of the first k trials, k = 1..n (failed trials count towards k: they spent budget). Columns
    series, trials, hypervolume."""
    ref = reference_point(keys, floor)
    out = []
    for series, g in df.groupby("series", sort=False):
        n = int(g["trial_index"].max())
        ok = g[g["status"] == "complete"]
        for k in range(1, n + 1):
            seen = ok[ok["trial_index"] <= k]
            hv = hypervolume(seen[list(keys)].to_numpy(dtype=float), directions, ref)
            out.append({"series": series, "trials": k, "hypervolume": hv})
    return pd.DataFrame(out, columns=["series", "trials", "hypervolume"])
