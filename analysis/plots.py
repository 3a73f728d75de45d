"""Drawing only: each figure as a PNG (matplotlib, headless Agg) and an interactive HTML (plotly;
hovering a point shows its hyperparameters and metrics). The HTML files load plotly.js from one
`plotly.min.js` written next to them, so they work offline; copy the folder, not a lone file."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import plotly.graph_objects as go  # noqa: E402
from plotly.subplots import make_subplots  # noqa: E402

from analysis.files import atomic  # noqa: E402
from analysis.load import params_of, trial_name  # noqa: E402
from analysis.params import NEAR_BOUND, SearchRange  # noqa: E402

HOVER_METRICS = ("forget_quality", "model_utility", "forget_truth_ratio", "forget_Q_A_ROUGE",
                 "forget_Q_A_Prob", "extraction_strength", "privleak")
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


def _front_line(g: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """A maximisation front as sorted x (forget quality) with its y; drawn as steps-pre."""
    g = g.sort_values("forget_quality")
    return g["forget_quality"].to_numpy(), g["model_utility"].to_numpy()


def _references(ax, pfig: go.Figure, refs: dict[str, dict]) -> None:
    """The target and retain models as black markers."""
    for name, marker, psym in (("target", "*", "star"), ("retain", "D", "diamond")):
        m = refs.get(name)
        if m is None:
            continue
        fq = max(m["forget_quality"], 1e-300)
        ax.scatter([fq], [m["model_utility"]], s=140, marker=marker, color="black", zorder=6,
                   label=f"{name} model")
        pfig.add_trace(go.Scatter(
            x=[fq], y=[m["model_utility"]], mode="markers", name=f"{name} model",
            marker={"symbol": psym, "size": 14, "color": "black"}, hoverinfo="text",
            hovertext=[f"<b>{name} model</b><br>" + "<br>".join(
                f"{k} = {_fmt(m[k])}" for k in HOVER_METRICS if k in m)]))


def pareto(rows: pd.DataFrame, on_front: pd.Series, refs: dict[str, dict], stem: Path,
           title: str) -> list[Path]:
    """Forget quality (log) vs model utility: every evaluated row faint (x: below the utility
    floor), each series' front as a step line, the target, retain and default points marked."""
    evaluated = rows[rows["status"].isin(["complete", "stopped"])].copy()
    evaluated["forget_quality"] = 10.0 ** evaluated["log10_forget_quality"]  # clipped > 0
    col = colours(list(rows["series"].unique()))
    fig, ax = plt.subplots(figsize=(8, 5.5))
    pfig = go.Figure()
    for s, g in evaluated.groupby("series", sort=False):
        c = col[s]
        for status, marker in (("complete", "o"), ("stopped", "x")):
            h = g[g["status"] == status]
            ax.scatter(h["forget_quality"], h["model_utility"], s=14, color=c, alpha=FAINT,
                       marker=marker)
            pfig.add_trace(go.Scatter(
                x=h["forget_quality"], y=h["model_utility"], mode="markers", name=f"{s} {status}",
                marker={"color": c, "opacity": FAINT, "symbol": "circle" if marker == "o" else "x"},
                hovertext=[hover(r) for _, r in h.iterrows()], hoverinfo="text",
                legendgroup=s, showlegend=False))
        f = g[on_front.loc[g.index]]
        if len(f):
            x, y = _front_line(f)
            ax.plot(x, y, drawstyle="steps-pre", color=c, lw=1.8, marker="o", ms=5,
                    label=f"{s} front ({len(f)})")
            pfig.add_trace(go.Scatter(
                x=x, y=y, mode="lines+markers", line={"shape": "vh", "color": c}, legendgroup=s,
                name=f"{s} front ({len(f)})", hoverinfo="text",
                hovertext=[hover(r) for _, r in f.sort_values("forget_quality").iterrows()]))
        d = g[g["is_default"]].sort_values("epoch").tail(1)
        if len(d):
            ax.scatter(d["forget_quality"], d["model_utility"], s=70, marker="s", color=c,
                       edgecolor="black", zorder=5, label=f"{s} reference defaults")
            pfig.add_trace(go.Scatter(
                x=d["forget_quality"], y=d["model_utility"], mode="markers", legendgroup=s,
                name=f"{s} reference defaults", hovertext=[hover(r) for _, r in d.iterrows()],
                hoverinfo="text", marker={"symbol": "square", "size": 11, "color": c,
                                          "line": {"color": "black", "width": 1.5}}))
    _references(ax, pfig, refs)
    ax.set_xscale("log")
    ax.set_xlabel("forget quality (KS p-value vs retain; log scale, higher = better forgotten)")
    ax.set_ylabel("model utility (higher = better)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    pfig.update_layout(title=title, xaxis={"type": "log", "title": "forget quality (log)"},
                       yaxis={"title": "model utility"}, template="plotly_white")
    return save(fig, pfig, stem)


def hypervolume(curves: pd.DataFrame, stem: Path, title: str) -> list[Path]:
    col = colours(list(curves["series"].unique()))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    pfig = go.Figure()
    for s, g in curves.groupby("series", sort=False):
        ax.plot(g["trials"], g["hypervolume"], drawstyle="steps-post", color=col[s], label=s)
        pfig.add_trace(go.Scatter(x=g["trials"], y=g["hypervolume"], name=s,
                                  line={"shape": "hv", "color": col[s]}))
    ax.set_xlabel("trials")
    ax.set_ylabel("hypervolume (log10 FQ x utility)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    pfig.update_layout(title=title, xaxis_title="trials", yaxis_title="hypervolume",
                       template="plotly_white")
    return save(fig, pfig, stem)


def _position(rng: SearchRange, values: pd.Series) -> np.ndarray:
    return np.array([rng.position(float(v)) if pd.notna(v) else np.nan for v in values])


def _tick_labels(rng: SearchRange) -> list[str]:
    if rng.log:
        mids = [math.exp(math.log(rng.low) + f * (math.log(rng.high) - math.log(rng.low)))
                for f in (0.0, 0.5, 1.0)]
    else:
        mids = [rng.low + f * (rng.high - rng.low) for f in (0.0, 0.5, 1.0)]
    return [f"{v:.3g}" for v in mids]


def param_axes(rows: pd.DataFrame, on_front: pd.Series, ranges: dict[str, SearchRange],
               flags: pd.DataFrame, stem: Path, title: str) -> list[Path]:
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
        for part, style in ((evaluated, {"color": "grey", "alpha": FAINT, "s": 10}),
                            (front_rows, {"color": "tab:blue", "s": 28, "zorder": 3})):
            x = _position(r, part[col])
            y = i + rng.uniform(-0.15, 0.15, len(x))
            flagged = (x <= NEAR_BOUND) | (x >= 1 - NEAR_BOUND)
            if part is front_rows:
                ax.scatter(x[~flagged], y[~flagged], **style)
                ax.scatter(x[flagged], y[flagged], color="red", s=40, edgecolor="black",
                           zorder=4)
                colour = ["red" if f else "royalblue" for f in flagged]
            else:
                ax.scatter(x, y, **style)
                colour = "lightgrey"
            pfig.add_trace(go.Scatter(
                x=x, y=y, mode="markers", showlegend=False, hoverinfo="text",
                hovertext=[hover(row) for _, row in part.iterrows()],
                marker={"color": colour, "size": 9 if part is front_rows else 6}))
        for x, label in zip((0.0, 0.5, 1.0), _tick_labels(r), strict=True):
            ax.annotate(label, (x, i - 0.38), ha="center", fontsize=7, color="dimgrey")
    ax.set_yticks(range(len(names)), [f"{n}{' (log)' if ranges[n].log else ''}" for n in names])
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.6, len(names) - 0.4)
    ax.set_xlabel("position in the searched range (0 = low bound, 1 = high bound)")
    n_flag = flags["param"].nunique() if len(flags) else 0
    ax.set_title(f"{title}\n{n_flag} parameter(s) with front points within "
                 f"{NEAR_BOUND:.0%} of a bound (red)", fontsize=10)
    pfig.update_layout(title=title, template="plotly_white",
                       xaxis={"title": "position in the searched range", "range": [-0.03, 1.03]},
                       yaxis={"tickvals": list(range(len(names))), "ticktext": names})
    for x0 in (0, 1 - NEAR_BOUND):
        pfig.add_vrect(x0=x0, x1=x0 + NEAR_BOUND, fillcolor="red", opacity=0.06, line_width=0)
    return save(fig, pfig, stem)


def importance(values: dict[str, dict[str, dict[str, float]]], notes: dict[str, str | None],
               stem: Path, title: str) -> list[Path]:
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
            pfig.add_trace(go.Bar(x=share, y=params, orientation="h", name=target,
                                  marker_color=c, legendgroup=target, showlegend=j == 0),
                           row=1, col=j + 1)
        ax.set_yticks(np.arange(len(params)) + 0.4 - width / 2, params)
        ax.set_xlabel("importance (share)")
        ax.set_title(s + (f"\n({notes[s]})" if notes.get(s) else ""), fontsize=9)
        if not by_target:
            ax.text(0.5, 0.5, notes.get(s) or "no importances", ha="center", va="center",
                    transform=ax.transAxes, fontsize=8, wrap=True)
    handles = {h.get_label(): h for ax in axes[0] for h in ax.get_legend_handles_labels()[0]}
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=len(handles),
                   fontsize=8, frameon=False)
    pfig.update_layout(title=title, barmode="group", template="plotly_white")
    return save(fig, pfig, stem)
