"""`report.md` and `report.html` for an analysis, with its plots under `analysis/`: settings,
reference models, trial counts and failures, fronts per method and across methods."""

from __future__ import annotations

import datetime
import html
from pathlib import Path

import numpy as np
import pandas as pd

from analysis import plots
from analysis.files import write_text
from analysis.load import trial_name
from analysis.pareto import FQ_MU
from analysis.summary import Analysis, counts, front_table
from sweeps.experiment import plots_path, report_path
from sweeps.objectives import BY_KEY, OBJECTIVES

SETTINGS = (
    "benchmark",
    "split",
    "trials",
    "sampler",
    "seed",
    "objectives",
    "preset",
    "space",
    "fixed",
    "batch_size",
    "grad_accum",
    "eval_every",
    "utility_floor",
    "seeds",
    "model",
    "lora_r",
)
REF_METRICS = (
    "forget_quality",
    "model_utility",
    "forget_truth_ratio",
    "forget_Q_A_ROUGE",
    "forget_Q_A_Prob",
    "extraction_strength",
    "privleak",
)
MAX_FAILURES = 30  # failure lines listed in the report; the counts table has them all


def _names(key: str) -> tuple[str, str, str]:
    """(in a title, in a sentence, on a hypervolume axis), from the objective's record."""
    o = BY_KEY[key]
    return o.name(0), o.name(1), o.name(2)


def _plane_title(a: Analysis) -> str:
    """What the Pareto plot shows, e.g. "forget quality vs model utility"."""
    keys = a.shared[0]
    if len(keys) == 1:
        return f"{_names(keys[0])[0]} by trial"
    return f"{_names(keys[0])[0]} vs {_names(keys[1])[0]}"


def _reference_text(a: Analysis) -> str:
    """The hypervolume reference point in words."""
    keys = a.shared[0]
    parts = [
        f"{_names(k)[1]} {r:g}" + (" (lower values are clipped there)" if k == FQ_MU[0] else "")
        for k, r in zip(keys, a.reference, strict=True)
    ]
    text = " and ".join([", ".join(parts[:-1]), parts[-1]] if len(parts) > 1 else parts)
    if any(k not in FQ_MU for k in keys):
        text += " (each objective's worst value; worse values are clipped there)"
    return text


def _file_safe(series: str) -> str:
    return series.replace("/", "__")


def draw(a: Analysis, out: Path, title: str) -> dict[str, list[Path]]:
    """Every plot, as PNG + HTML under out/analysis; returns name -> files."""
    d = plots_path(out)
    keys, dirs = a.shared
    ref = ", ".join(f"{_names(k)[2]} {r:g}" for k, r in zip(keys, a.reference, strict=True))
    figs = {
        "pareto": plots.pareto(
            a.rows,
            a.on_plot_front,
            a.refs,
            keys,
            dirs,
            d / "pareto",
            f"{title}: {_plane_title(a)}",
            a.confirmed,
        ),
        "hypervolume": plots.hypervolume(
            a.curves,
            d / "hypervolume",
            f"{title}: hypervolume vs trials (ref. {ref})",
            " x ".join(_names(k)[2] for k in keys),
        ),
    }
    for s in a.series:
        if a.ranges[s]:
            part = a.rows[a.rows["series"] == s]
            figs[f"params-{s}"] = plots.param_axes(
                part,
                a.on_front,
                a.ranges[s],
                a.flags[a.flags["series"] == s],
                d / f"params-{_file_safe(s)}",
                f"{s}: front points in the searched ranges",
            )
    figs["importance"] = plots.importance(
        {s: i.values for s, i in a.importances.items()},
        {s: i.note for s, i in a.importances.items()},
        d / "importance",
        f"{title}: parameter importance",
    )
    return figs


def _fmt(v) -> str:
    if isinstance(v, float | np.floating):
        return "" if np.isnan(v) else f"{v:.4g}"
    if isinstance(v, list | tuple):
        return ",".join(map(str, v))
    if isinstance(v, dict):
        return " ".join(f"{k}={x}" for k, x in v.items()) or "-"
    return "-" if v is None else str(v)


def _strings(df: pd.DataFrame) -> pd.DataFrame:
    return df.apply(lambda col: col.map(_fmt)).astype(str)


def blocks(a: Analysis, figs: dict[str, list[Path]], title: str) -> list[tuple]:
    """The report as (kind, ...) blocks, rendered to Markdown and HTML alike."""
    first = a.experiments[0]
    return [
        ("h1", f"unlearn-sweep report: {title}"),
        (
            "p",
            (
                f"Folders: {', '.join(str(e.home) for e in a.experiments)}. unlearn-sweep "
                f"{first.manifest.get('version', '?')}, analysed "
                f"{datetime.datetime.now(datetime.UTC).isoformat(timespec='seconds')}."
            ),
        ),
        *_setting_blocks(a),
        *_trial_blocks(a),
        *_front_blocks(a, figs),
        *_confirmed_blocks(a),
    ]


def _interval(mean: float, low: float, high: float) -> str:
    """A fresh-seed mean with its 95% interval: "-3.1 +- 0.42 [-3.5, -2.7]" (one seed: the mean)."""
    if pd.isna(mean):
        return "-"
    if pd.isna(low):
        return f"{mean:.4g}"
    return f"{mean:.4g} +- {(high - low) / 2:.3g} [{low:.4g}, {high:.4g}]"


def confirmed_table(a: Analysis, series: str) -> pd.DataFrame:
    """The series' confirmed points: trial, epoch, fresh seeds, and per objective the sweep's
    value beside the fresh-seed mean +- the 95% interval's half width [its ends]."""
    c = a.confirmed[a.confirmed["series"] == series]
    out = pd.DataFrame(
        {
            "trial": c["trial_id"],
            "epoch": c["epoch"].astype(int),
            "fresh seeds": c["n"].astype(int),
        }
    )
    for k in a.objectives[series][0]:
        if f"{k}_mean" not in c:
            continue
        out[f"{k} sweep"] = c[f"{k}_sweep"]
        out[f"{k} fresh mean +- 95%"] = [
            _interval(m, lo, hi)
            for m, lo, hi in zip(c[f"{k}_mean"], c[f"{k}_low"], c[f"{k}_high"], strict=True)
        ]
    return out.reset_index(drop=True)


def _confirmed_blocks(a: Analysis) -> list[tuple]:
    b: list[tuple] = [("h2", "Confirmed on fresh seeds")]
    if not len(a.confirmed):
        return b + [
            (
                "p",
                "No point was confirmed yet: `unlearn-sweep confirm DIR` reruns the front points "
                "closest to the knee on fresh seeds (a sweep's best point on one seed is partly "
                "its luckiest seed).",
            )
        ]
    b.append(
        (
            "p",
            "Points `unlearn-sweep confirm` reran on training seeds the sweep never used: the "
            "sweep's value beside the fresh-seed mean +- the half width of its 95% Student-t "
            "interval, mean +- t(0.975, n-1) std / sqrt(n) [its ends]. The Pareto plot draws "
            "them as hollow diamonds with these intervals; `export` chooses with these means.",
        )
    )
    for s in a.series:
        if (a.confirmed["series"] == s).any():
            b += [("h3", f"{s} (confirmed)"), ("table", confirmed_table(a, s))]
    return b


def _setting_blocks(a: Analysis) -> list[tuple]:
    settings = pd.DataFrame(
        {
            s: {k: {**sweep, **sweep["source"]}.get(k) for k in SETTINGS}
            for s, sweep in _sweeps(a).items()
        }
    )
    b = [("h2", "Sweep settings"), ("table", settings.rename_axis("setting").reset_index())]
    names = [
        m
        for m in dict.fromkeys(REF_METRICS + tuple(o.needs for o in OBJECTIVES.values()))
        if any(m in v for v in a.refs.values())
    ]
    refs = pd.DataFrame({k: {m: v.get(m) for m in names} for k, v in a.refs.items()})
    if len(refs.columns):
        return b + [
            ("h2", "Reference models"),
            (
                "p",
                "The target model before unlearning and the retain model (never saw "
                "the forget set) on the same split.",
            ),
            ("table", refs.rename_axis("metric").reset_index()),
        ]
    return b + [("h2", "Reference models"), ("p", "No reference metrics in the folder.")]


def _trial_blocks(a: Analysis) -> list[tuple]:
    b = [
        ("h2", "Trials"),
        (
            "p",
            "A trial counts once, by how it ended: complete, stopped by "
            "the utility floor (infeasible), diverged (non-finite loss), "
            "failed (error), or still running. Every feasible evaluated "
            "epoch, of any trial, is a candidate for the fronts.",
        ),
        ("table", counts(a).rename_axis("series").reset_index()),
    ]
    failed = a.rows[a.rows["status"].isin(["failed", "diverged"])]
    if len(failed):
        lines = [
            f"{r['series']} trial {trial_name(r)} {r['status']}: {r['failure']}"
            for _, r in failed.head(MAX_FAILURES).iterrows()
        ]
        more = len(failed) - MAX_FAILURES
        b.append(("list", lines + ([f"... and {more} more"] if more > 0 else [])))
    return b


def _front_blocks(a: Analysis, figs: dict[str, list[Path]]) -> list[tuple]:
    plane = _plane_title(a)  # a sentence starts upper-case; an objective key stays as it is
    heading = plane[0].upper() + plane[1:] if BY_KEY[a.shared[0][0]].names else plane
    b: list[tuple] = [
        ("h2", heading),
        (
            "p",
            (
                "Every evaluated epoch of every trial, faint (x: below the utility floor); each "
                "series' front of feasible points as a step line; target, retain and "
                "reference-default points marked. Hypervolume reference point: "
                f"{_reference_text(a)}.{_plane_note(a)}"
            ),
        ),
        ("figure", "pareto", figs["pareto"]),
        ("h2", "Hypervolume vs trials"),
        ("figure", "hypervolume", figs["hypervolume"]),
        ("h2", "Pareto fronts per series"),
    ]
    for s in a.series:
        objs = ", ".join(f"{k} ({d})" for k, d in zip(*a.objectives[s], strict=True))
        b += [
            ("h3", s),
            ("p", f"Objectives: {objs}. Front over feasible evaluated epochs."),
            ("table", front_table(a, s)),
        ]
        flags = a.flags[a.flags["series"] == s]
        if len(flags):
            b.append(
                (
                    "p",
                    "Front points within 10% of a range bound (widen the range?): "
                    + "; ".join(
                        f"{r.param}={r.value:.3g} near the {r.bound} bound of {r.range}"
                        f" (trial {r.trial_id})"
                        for r in flags.itertuples()
                    ),
                )
            )
        if f"params-{s}" in figs:
            b.append(("figure", f"params-{s}", figs[f"params-{s}"]))
    b += [
        ("h2", "Parameter importance"),
        (
            "p",
            "Optuna's PED-ANOVA importances per objective, and for the front jointly. "
            + " ".join(f"{s}: {i.note}." for s, i in a.importances.items() if i.note),
        ),
        ("figure", "importance", figs["importance"]),
    ]
    if len(a.series) > 1:
        keys = a.shared[0]
        extra = [k for k in a.objectives[a.series[0]][0] if k not in keys]
        glob = a.rows[a.on_global_front][["series", "trial_id", "epoch", *keys, *extra]]
        b += [("h2", "Front across series"), ("table", glob.reset_index(drop=True))]
    return b


def _plane_note(a: Analysis) -> str:
    """Where the plot, the hypervolume and the front across series leave objectives out."""
    keys = a.shared[0]
    note = ""
    if len({tuple(k) for k, _ in a.objectives.values()}) > 1:
        note += (
            " The series optimise different objectives: the plot, the hypervolume and the "
            f"front across series use the ones they share ({', '.join(keys)})."
        )
    if len(keys) == 1:
        note += " One objective: the plot shows it against trial order, best points marked."
    if len(keys) == 3:
        note += (
            f" The plot shows the first two objectives and the front in those two; the "
            f"hypervolume uses all three ({', '.join(keys)})."
        )
    return note


def _sweeps(a: Analysis) -> dict[str, dict]:
    first = a.rows.drop_duplicates("series")
    by_name = {e.name: e for e in a.experiments}
    return {
        s: by_name[e].sweeps[m]
        for s, e, m in zip(first["series"], first["experiment"], first["method"], strict=True)
    }


def to_markdown(blocks_: list[tuple], out: Path) -> str:
    parts = []
    for kind, *rest in blocks_:
        if kind in ("h1", "h2", "h3"):
            parts.append("#" * int(kind[1]) + " " + rest[0])
        elif kind == "p":
            parts.append(rest[0])
        elif kind == "list":
            parts.append("\n".join(f"- {x}" for x in rest[0]))
        elif kind == "table":
            t = _strings(rest[0])
            rows = [list(t.columns), ["---"] * len(t.columns), *t.to_numpy().tolist()]
            parts.append(
                "\n".join(
                    "| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows
                )
            )
        elif kind == "figure":
            png, html_ = (p.relative_to(out).as_posix() for p in rest[1])
            parts.append(f"![{rest[0]}]({png})\n\n[interactive version]({html_})")
    return "\n\n".join(parts) + "\n"


def to_html(blocks_: list[tuple], out: Path, title: str) -> str:
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        "</title><style>body{font-family:sans-serif;max-width:1200px;margin:auto}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
        "padding:2px 6px}iframe{width:100%;height:620px;border:0}</style></head><body>"
    ]
    for kind, *rest in blocks_:
        if kind in ("h1", "h2", "h3"):
            parts.append(f"<{kind}>{html.escape(rest[0])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{html.escape(rest[0])}</p>")
        elif kind == "list":
            parts.append("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in rest[0]) + "</ul>")
        elif kind == "table":
            parts.append(_strings(rest[0]).to_html(index=False, escape=True))
        elif kind == "figure":
            png, html_ = (p.relative_to(out).as_posix() for p in rest[1])
            # the interactive plot in a frame (hover for hyperparameters); the PNG as a link
            parts.append(
                f"<iframe src='{html_}' title='{rest[0]}'></iframe>"
                f"<p><a href='{png}'>static PNG</a></p>"
            )
    return "\n".join(parts) + "\n</body></html>\n"


def targets(out: Path) -> list[Path]:
    """What `write_report` writes into (its plots go into out/analysis)."""
    return [plots_path(out), report_path(out, ".md"), report_path(out, ".html")]


def write_report(a: Analysis, out: Path, title: str) -> list[Path]:
    """Plots under out/analysis, then report.md and report.html in out; returns the files."""
    figs = draw(a, out, title)
    b = blocks(a, figs, title)
    md = write_text(report_path(out, ".md"), to_markdown(b, out))
    page = write_text(report_path(out, ".html"), to_html(b, out, title))
    return [md, page, *(p for files in figs.values() for p in files)]
