"""Drawing only: each figure as a PNG (matplotlib, headless Agg) and an interactive HTML (plotly;
hovering a point shows its hyperparameters and metrics). The HTML files load plotly.js from one
`plotly.min.js` written next to them, so they work offline; copy the folder, not a lone file."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
from plotly.subplots import make_subplots  # noqa: E402

from analysis.files import atomic  # noqa: E402
from analysis.load import objective_value, params_of, trial_name  # noqa: E402
from analysis.params import NEAR_BOUND, SearchRange  # noqa: E402
from sweeps.objectives import BY_KEY, OBJECTIVES  # noqa: E402

# TOFU's headline metrics, then every other metric an objective is computed from
HOVER_METRICS = tuple(
    dict.fromkeys(
        (
            "forget_quality",
            "model_utility",
            "forget_truth_ratio",
            "forget_Q_A_ROUGE",
            "forget_Q_A_Prob",
            "extraction_strength",
            "privleak",
            *(o.needs for o in OBJECTIVES.values()),
        )
    )
)
FAINT = 0.25


def colours(series: list[str]) -> dict[str, str]:
    cycle = plt.get_cmap("tab10").colors
    return {s: matplotlib.colors.to_hex(cycle[i % len(cycle)]) for i, s in enumerate(series)}


def hover(row: pd.Series) -> str:
    head = f"{row['series']} trial {trial_name(row)}"
    if np.isfinite(row.get("epoch", np.nan)):
        head += f" epoch {int(row['epoch'])}/{int(row['epochs'])}"
    params = [f"{k} = {_fmt(v)}" for k, v in params_of(row).items()]
    metrics = [f"{k} = {_fmt(row[k])}" for k in HOVER_METRICS if k in row and pd.notna(row[k])]
    return "<br>".join([f"<b>{head}</b> ({row['status']})", *params, *metrics])


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def save(mpl_fig, plotly_fig: go.Figure, stem: Path) -> list[Path]:
    """stem.png and stem.html, each written under a temporary name and renamed."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, html = stem.with_suffix(".png"), stem.with_suffix(".html")
    with atomic(png) as tmp:
        mpl_fig.savefig(tmp, dpi=120, bbox_inches="tight", format="png")
    plt.close(mpl_fig)
    with atomic(html) as tmp:
        plotly_fig.write_html(tmp, include_plotlyjs="directory", full_html=True)
    return [png, html]


@dataclass(frozen=True)
class Axis:
    """One axis of the Pareto plot: a column of the rows, drawn as given or as 10**value."""

    key: str  # an objective key, or "trial_index" (trial order) for a single objective
    label: str
    direction: str | None  # "max" | "min"; None for trial order
    log: bool = False  # log10 forget quality is drawn as the p-value on a log axis

    def of(self, values):
        return 10.0**values if self.log else values


def objective_axis(key: str, direction: str) -> Axis:
    o = BY_KEY[key]
    label = o.axis or f"{key} ({'higher' if direction == 'max' else 'lower'} is better)"
    return Axis(key, label, direction, log=o.log_axis)


def plane_axes(keys: list[str], directions: list[str]) -> tuple[Axis, Axis]:
    """x and y: the first two objectives; one objective is drawn against trial order."""
    if len(keys) == 1:
        return Axis("trial_index", "trial (sampling order)", None), objective_axis(
            keys[0], directions[0]
        )
    return objective_axis(keys[0], directions[0]), objective_axis(keys[1], directions[1])


def _references(ax, pfig: go.Figure, refs: dict[str, dict], x: Axis, y: Axis) -> None:
    """The target and retain models as black markers (as lines against trial order), where their
    metrics give the plotted objectives."""
    for name, marker, psym in (("target", "*", "star"), ("retain", "D", "diamond")):
        m = refs.get(name)
        yv = None if m is None else objective_value(m, y.key)
        xv = None if m is None or x.direction is None else objective_value(m, x.key)
        if yv is None or (x.direction is not None and xv is None):
            continue
        text = f"<b>{name} model</b><br>" + "<br>".join(
            f"{k} = {_fmt(m[k])}" for k in HOVER_METRICS if k in m
        )
        if x.direction is None:
            ax.axhline(
                y.of(yv),
                color="black",
                ls="--" if name == "target" else ":",
                lw=1,
                label=f"{name} model",
            )
            pfig.add_hline(
                y=y.of(yv),
                line_dash="dash" if name == "target" else "dot",
                annotation_text=f"{name} model",
            )
            continue
        ax.scatter(
            [x.of(xv)],
            [y.of(yv)],
            s=140,
            marker=marker,
            color="black",
            zorder=6,
            label=f"{name} model",
        )
        pfig.add_trace(
            go.Scatter(
                x=[x.of(xv)],
                y=[y.of(yv)],
                mode="markers",
                name=f"{name} model",
                marker={"symbol": psym, "size": 14, "color": "black"},
                hoverinfo="text",
                hovertext=[text],
            )
        )


def _front(ax, pfig: go.Figure, f: pd.DataFrame, x: Axis, c: str, s: str) -> None:
    """The front as a staircase bounding the region it dominates: sorted by x, each step holds
    the y of the point at its better end (steps-pre when higher x is better, steps-post when
    lower is). Against trial order the best points are markers only."""
    f = f.sort_values("_x", kind="stable")
    label, hovertext = f"{s} front ({len(f)})", [hover(r) for _, r in f.iterrows()]
    if x.direction is None:
        ax.scatter(f["_x"], f["_y"], color=c, s=40, zorder=4, label=f"{s} best ({len(f)})")
        pfig.add_trace(
            go.Scatter(
                x=f["_x"],
                y=f["_y"],
                mode="markers",
                legendgroup=s,
                name=f"{s} best ({len(f)})",
                hoverinfo="text",
                hovertext=hovertext,
                marker={"color": c, "size": 10},
            )
        )
        return
    pre = x.direction == "max"
    ax.plot(
        f["_x"].to_numpy(),
        f["_y"].to_numpy(),
        drawstyle="steps-pre" if pre else "steps-post",
        color=c,
        lw=1.8,
        marker="o",
        ms=5,
        label=label,
    )
    pfig.add_trace(
        go.Scatter(
            x=f["_x"],
            y=f["_y"],
            mode="lines+markers",
            legendgroup=s,
            name=label,
            hoverinfo="text",
            line={"shape": "vh" if pre else "hv", "color": c},
            hovertext=hovertext,
        )
    )


def _bars(a: Axis, c: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where a confirmed point sits on axis `a` (its fresh-seed mean; the trial against trial
    order) and its interval as distances below and above it (0 where there is none)."""
    if a.direction is None:
        x = c["trial_index"].to_numpy(dtype=float)
        return x, np.zeros(len(c)), np.zeros(len(c))
    mean, low, high = (
        a.of(c[f"{a.key}_{s}"].to_numpy(dtype=float)) for s in ("mean", "low", "high")
    )
    return mean, np.nan_to_num(mean - low), np.nan_to_num(high - mean)


def _confirmed(ax, pfig: go.Figure, c: pd.DataFrame, x: Axis, y: Axis, colour: str, s: str) -> None:
    """Confirmed points: a hollow diamond at the fresh-seed mean with its 95% interval as error
    bars on both axes (the sweep's own value stays where the front drew it)."""
    (xm, xlo, xhi), (ym, ylo, yhi) = _bars(x, c), _bars(y, c)
    label = f"{s} confirmed ({len(c)}; fresh-seed mean, 95% interval)"
    ax.errorbar(
        xm,
        ym,
        xerr=None if x.direction is None else [xlo, xhi],
        yerr=[ylo, yhi],
        fmt="D",
        ms=7,
        mfc="white",
        color=colour,
        ecolor=colour,
        capsize=3,
        zorder=5,
        label=label,
    )
    text = [
        f"<b>{s} trial {r['trial_id']} epoch {int(r['epoch'])}</b>, confirmed on "
        f"{int(r['n'])} fresh seed(s)<br>"
        + "<br>".join(
            f"{k}: sweep {_fmt(r[f'{k}_sweep'])}, fresh mean {_fmt(r[f'{k}_mean'])} "
            f"[{_fmt(r[f'{k}_low'])}, {_fmt(r[f'{k}_high'])}]"
            for k in dict.fromkeys(a.key for a in (x, y) if a.direction is not None)
        )
        for _, r in c.iterrows()
    ]
    pfig.add_trace(
        go.Scatter(
            x=xm,
            y=ym,
            mode="markers",
            legendgroup=s,
            name=label,
            hoverinfo="text",
            hovertext=text,
            marker={"symbol": "diamond-open", "size": 11, "color": colour},
            error_x=None
            if x.direction is None
            else {"type": "data", "symmetric": False, "array": xhi, "arrayminus": xlo},
            error_y={"type": "data", "symmetric": False, "array": yhi, "arrayminus": ylo},
        )
    )


def pareto(
    rows: pd.DataFrame,
    on_front: pd.Series,
    refs: dict[str, dict],
    keys: list[str],
    directions: list[str],
    stem: Path,
    title: str,
    confirmed: pd.DataFrame | None = None,
) -> list[Path]:
    """pareto_figures as stem.png and stem.html."""
    figs = pareto_figures(rows, on_front, refs, keys, directions, title, confirmed)
    return save(*figs, stem)


def pareto_figures(
    rows: pd.DataFrame,
    on_front: pd.Series,
    refs: dict[str, dict],
    keys: list[str],
    directions: list[str],
    title: str,
    confirmed: pd.DataFrame | None = None,
):
    """The first two objectives (log10 forget quality as the p-value on a log axis; a single
    objective against trial order): every evaluated row faint (x: below the utility floor), each
    series' front as a step line, the target, retain and default points marked, and the points
    `confirm` reran at their fresh-seed means with 95% intervals. Returns (matplotlib, plotly)."""
    x, y = plane_axes(keys, directions)
    evaluated = rows[rows["status"].isin(["complete", "stopped"])]
    evaluated = evaluated.assign(_x=x.of(evaluated[x.key]), _y=y.of(evaluated[y.key]))
    col = colours(list(rows["series"].unique()))
    fig, ax = plt.subplots(figsize=(8, 5.5))
    pfig = go.Figure()
    for s, g in evaluated.groupby("series", sort=False):
        c = col[s]
        for status, marker in (("complete", "o"), ("stopped", "x")):
            h = g[g["status"] == status]
            ax.scatter(h["_x"], h["_y"], s=14, color=c, alpha=FAINT, marker=marker)
            pfig.add_trace(
                go.Scatter(
                    x=h["_x"],
                    y=h["_y"],
                    mode="markers",
                    name=f"{s} {status}",
                    marker={
                        "color": c,
                        "opacity": FAINT,
                        "symbol": "circle" if marker == "o" else "x",
                    },
                    hovertext=[hover(r) for _, r in h.iterrows()],
                    hoverinfo="text",
                    legendgroup=s,
                    showlegend=False,
                )
            )
        f = g[on_front.loc[g.index]]
        if len(f):
            _front(ax, pfig, f, x, c, s)
        d = g[g["is_default"]].sort_values("epoch").tail(1)
        if len(d):
            ax.scatter(
                d["_x"],
                d["_y"],
                s=70,
                marker="s",
                color=c,
                edgecolor="black",
                zorder=5,
                label=f"{s} reference defaults",
            )
            pfig.add_trace(
                go.Scatter(
                    x=d["_x"],
                    y=d["_y"],
                    mode="markers",
                    legendgroup=s,
                    name=f"{s} reference defaults",
                    hovertext=[hover(r) for _, r in d.iterrows()],
                    hoverinfo="text",
                    marker={
                        "symbol": "square",
                        "size": 11,
                        "color": c,
                        "line": {"color": "black", "width": 1.5},
                    },
                )
            )
        mine = (
            confirmed[confirmed["series"] == s] if confirmed is not None and len(confirmed) else ()
        )
        if len(mine):
            _confirmed(ax, pfig, mine, x, y, c, s)
    _references(ax, pfig, refs, x, y)
    if x.log:
        ax.set_xscale("log")
    ax.set_xlabel(x.label)
    ax.set_ylabel(y.label)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    pfig.update_layout(
        title=title,
        xaxis={"type": "log" if x.log else "linear", "title": x.label},
        yaxis={"title": y.label},
        template="plotly_white",
    )
    return fig, pfig


def hypervolume(curves: pd.DataFrame, stem: Path, title: str, unit: str) -> list[Path]:
    """Hypervolume against trials, per series; `unit` names its axes (e.g. "log10 FQ x
    utility")."""
    col = colours(list(curves["series"].unique()))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    pfig = go.Figure()
    for s, g in curves.groupby("series", sort=False):
        ax.plot(g["trials"], g["hypervolume"], drawstyle="steps-post", color=col[s], label=s)
        pfig.add_trace(
            go.Scatter(
                x=g["trials"], y=g["hypervolume"], name=s, line={"shape": "hv", "color": col[s]}
            )
        )
    ax.set_xlabel("trials")
    ax.set_ylabel(f"hypervolume ({unit})")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    pfig.update_layout(
        title=title, xaxis_title="trials", yaxis_title="hypervolume", template="plotly_white"
    )
    return save(fig, pfig, stem)


def _position(rng: SearchRange, values: pd.Series) -> np.ndarray:
    return np.array([rng.position(float(v)) if pd.notna(v) else np.nan for v in values])


def _tick_labels(rng: SearchRange) -> list[str]:
    if rng.log:
        mids = [
            math.exp(math.log(rng.low) + f * (math.log(rng.high) - math.log(rng.low)))
            for f in (0.0, 0.5, 1.0)
        ]
    else:
        mids = [rng.low + f * (rng.high - rng.low) for f in (0.0, 0.5, 1.0)]
    return [f"{v:.3g}" for v in mids]


def param_axes(
    rows: pd.DataFrame,
    on_front: pd.Series,
    ranges: dict[str, SearchRange],
    flags: pd.DataFrame,
    stem: Path,
    title: str,
) -> list[Path]:
    """One horizontal axis per searched parameter, scaled 0..1 over its range as the sampler saw
    it (log for log ranges): every evaluated row faint, front points in colour, front points
    within NEAR_BOUND of a bound in red (shaded bands)."""
    evaluated = rows[rows["status"].isin(["complete", "stopped"])]
    front_rows = evaluated[on_front.loc[evaluated.index]]
    names = list(ranges)
    rng = np.random.default_rng(0)  # vertical jitter only, so the picture is reproducible
    fig, ax = plt.subplots(figsize=(8, 0.7 * len(names) + 1.5))
    pfig = go.Figure()
    ax.axvspan(0, NEAR_BOUND, color="red", alpha=0.08)
    ax.axvspan(1 - NEAR_BOUND, 1, color="red", alpha=0.08)
    for i, name in enumerate(names):
        r, col = ranges[name], f"p_{name}"
        for part, style in (
            (evaluated, {"color": "grey", "alpha": FAINT, "s": 10}),
            (front_rows, {"color": "tab:blue", "s": 28, "zorder": 3}),
        ):
            x = _position(r, part[col])
            y = i + rng.uniform(-0.15, 0.15, len(x))
            flagged = (x <= NEAR_BOUND) | (x >= 1 - NEAR_BOUND)
            if part is front_rows:
                ax.scatter(x[~flagged], y[~flagged], **style)
                ax.scatter(x[flagged], y[flagged], color="red", s=40, edgecolor="black", zorder=4)
                colour = ["red" if f else "royalblue" for f in flagged]
            else:
                ax.scatter(x, y, **style)
                colour = "lightgrey"
            pfig.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    mode="markers",
                    showlegend=False,
                    hoverinfo="text",
                    hovertext=[hover(row) for _, row in part.iterrows()],
                    marker={"color": colour, "size": 9 if part is front_rows else 6},
                )
            )
        for x, label in zip((0.0, 0.5, 1.0), _tick_labels(r), strict=True):
            ax.annotate(label, (x, i - 0.38), ha="center", fontsize=7, color="dimgrey")
    ax.set_yticks(range(len(names)), [f"{n}{' (log)' if ranges[n].log else ''}" for n in names])
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_xlabel("position in the searched range (0 = low bound, 1 = high bound)")
    n_flag = flags["param"].nunique() if len(flags) else 0
    ax.set_title(
        f"{title}\n{n_flag} parameter(s) with front points within "
        f"{NEAR_BOUND:.0%} of a bound (red)",
        fontsize=10,
    )
    pfig.update_layout(
        title=title,
        template="plotly_white",
        xaxis={"title": "position in the searched range", "range": [-0.03, 1.03]},
        yaxis={"tickvals": list(range(len(names))), "ticktext": names},
    )
    for x0 in (0, 1 - NEAR_BOUND):
        pfig.add_vrect(x0=x0, x1=x0 + NEAR_BOUND, fillcolor="red", opacity=0.06, line_width=0)
    return save(fig, pfig, stem)


def importance(
    values: dict[str, dict[str, dict[str, float]]],
    notes: dict[str, str | None],
    stem: Path,
    title: str,
) -> list[Path]:
    """Per series a panel of horizontal bars: parameter x target (each objective, "front")."""
    series = list(values)
    fig, axes = plt.subplots(1, len(series), figsize=(5 * len(series), 3.5), squeeze=False)
    pfig = make_subplots(rows=1, cols=len(series), subplot_titles=series)
    cycle = plt.get_cmap("tab10").colors
    for j, s in enumerate(series):
        ax, by_target = axes[0][j], values[s]
        params = sorted({p for v in by_target.values() for p in v})
        width = 0.8 / max(1, len(by_target))
        for k, (target, v) in enumerate(by_target.items()):
            y = np.arange(len(params)) + k * width
            share = [v.get(p, 0.0) for p in params]
            c = matplotlib.colors.to_hex(cycle[k % len(cycle)])
            ax.barh(y, share, height=width, color=c, label=target)
            pfig.add_trace(
                go.Bar(
                    x=share,
                    y=params,
                    orientation="h",
                    name=target,
                    marker_color=c,
                    legendgroup=target,
                    showlegend=j == 0,
                ),
                row=1,
                col=j + 1,
            )
        ax.set_yticks(np.arange(len(params)) + 0.4 - width / 2, params)
        ax.set_xlabel("importance (share)")
        ax.set_title(s + (f"\n({notes[s]})" if notes.get(s) else ""), fontsize=9)
        if not by_target:
            ax.text(
                0.5,
                0.5,
                notes.get(s) or "no importances",
                ha="center",
                va="center",
                transform=ax.transAxes,
                fontsize=8,
                wrap=True,
            )
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="lower center",
            ncol=len(handles),
            fontsize=8,
            frameon=False,
        )
    pfig.update_layout(title=title, barmode="group", template="plotly_white")
    return save(fig, pfig, stem)
