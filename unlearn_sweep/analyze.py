"""`unlearn-sweep analyze` and `unlearn-sweep export`: the subcommands the command line adds
with `add_parsers(sub)` and dispatches through `COMMANDS`. Everything is computed and validated
before the first file is written."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
from pathlib import Path

from analysis.files import check_inside
from sweeps.experiment import best_dir, comparison_path, plots_path
from unlearn_core.errors import UserError
from unlearn_core.write_errors import probe


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from analysis import export  # pandas and yaml load only when the parser is built

    p = sub.add_parser(
        "analyze",
        help="Pareto fronts, plots and report.md/html of experiment folders",
        description="Writes report.md, report.html and analysis/ (PNG + interactive HTML plots) "
        "in each folder and prints each method's front. With several folders "
        "(e.g. two samplers on one benchmark) it also writes a side-by-side "
        "comparison into FIRST/comparison/, its series named folder/method.",
    )
    p.add_argument("experiments", nargs="+", metavar="DIR", help="experiment folder(s)")
    p.add_argument(
        "--output",
        metavar="OUT",
        help="write the report and plots into OUT (OUT/<name> for each of several folders, "
        "OUT/comparison) instead of into the experiment folders, e.g. for a read-only one",
    )
    defaults = {f.name: f.default for f in dataclasses.fields(export.Rule)}
    p = sub.add_parser(
        "export",
        help="write the configuration a rule picks to DIR/best/<method>.yaml (+ .json)",
        description=export.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("experiment", metavar="DIR")
    p.add_argument("--rule", required=True, help="knee | max-forget | max-utility | weighted")
    p.add_argument(
        "--min-utility-frac",
        type=float,
        metavar="F",
        help=f"max-forget: the utility objective (the sweep's second) keeps F "
        f"of the target's, e.g. model_utility >= F x the target's (default "
        f"{defaults['min_utility_frac']})",
    )
    p.add_argument(
        "--min-forget-quality",
        type=float,
        metavar="Q",
        help=f"max-utility when the first objective is forget_quality: "
        f"forget_quality >= Q (default {defaults['min_forget_quality']}); other "
        f"forget objectives must reach the retain model's value",
    )
    p.add_argument(
        "--weights",
        metavar="A,B",
        help="weighted: one weight per objective, in the sweep's order (default: equal)",
    )
    p.add_argument(
        "--openunlearning",
        action="store_true",
        help="also print the equivalent open-unlearning command-line overrides",
    )


def _print_fronts(a) -> None:
    import pandas as pd

    from analysis.summary import front_table

    with pd.option_context(
        "display.width", 160, "display.max_columns", 30, "display.float_format", "{:.4g}".format
    ):
        for s in a.series:
            table = front_table(a, s)
            print(f"\n{s}: {len(table)} point(s) on the Pareto front")
            print(table.to_string(index=False))


def cmd_analyze(args: argparse.Namespace) -> None:
    from analysis.report import targets, write_report
    from analysis.summary import analyze

    homes = [Path(d).expanduser().absolute() for d in args.experiments]
    singles = [analyze([h]) for h in homes]  # validates every folder before writing anything
    both = analyze(homes) if len(homes) > 1 else None
    outs = report_folders(homes, args.output)
    for key, out in outs.items():  # every output checked before the first is written
        if key == "comparison":
            check_inside(out.parent, [out, *targets(out)])
        else:
            check_inside(out, targets(out))
        probe(plots_path(out), "the report", WHERE_ELSE)
    with _report_write_errors():
        _write_reports(singles, both, homes, outs, write_report)


WHERE_ELSE = "the experiment is unchanged; give --output DIR to write the report elsewhere"


def report_folders(homes: list[Path], output: str | None) -> dict[str, Path]:
    """Where each report goes: the experiment folder itself, or under --output."""
    base = Path(output).expanduser().absolute() if output else None
    outs = {str(h): (base if len(homes) == 1 else base / h.name) if base else h for h in homes}
    if len(homes) > 1:
        outs["comparison"] = comparison_path(base or homes[0])
    return outs


@contextlib.contextmanager
def _report_write_errors():
    try:
        yield
    except OSError as e:  # a full disk mid-report: one line, the experiment's own files intact
        raise UserError(
            f"cannot write {e.filename} ({e.strerror}); the experiment's own files are unchanged"
        ) from None


def _write_reports(singles, both, homes, outs, write_report) -> None:
    for a in singles:
        home = a.experiments[0].home
        out = outs[str(home)]
        files = write_report(a, out, a.experiments[0].name)
        print(f"== {home}")
        _print_fronts(a)
        print(f"\nreport: {files[0]}\n        {files[1]}\nplots:  {plots_path(out)}")
    if both is not None:
        out = outs["comparison"]
        files = write_report(both, out, " vs ".join(h.name for h in homes))
        print(f"\n== comparison of {len(homes)} folders")
        _print_fronts(both)
        print(f"\nreport: {files[0]}\n        {files[1]}")


def _weights(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError:
        raise UserError(f"--weights expects comma-separated numbers, got {text!r}") from None


def cmd_export(args: argparse.Namespace) -> None:
    from analysis import export
    from analysis.load import load

    given = {
        "min_utility_frac": args.min_utility_frac,
        "min_forget_quality": args.min_forget_quality,
        "weights": _weights(args.weights),
    }
    rule = export.Rule(args.rule, **{k: v for k, v in given.items() if v is not None})
    rows, (exp,) = load([args.experiment])
    if rows.empty or not (rows["status"] == "complete").any():
        raise UserError(f"{exp.home} has no complete trial yet (nothing to export)")
    other = [
        f"{m}: {s['objectives'][0]}"
        for m, s in exp.sweeps.items()
        if s["objectives"][0] != "forget_quality"
    ]
    if args.min_forget_quality is not None and other:
        raise UserError(
            f"--min-forget-quality applies to forget_quality, and these sweeps' "
            f"forget objective is another ({', '.join(other)}); max-utility then "
            "keeps trials at least as good as the retain model"
        )
    records = export.select(exp, rows, rule)
    overrides, ou_files = [], {}
    if args.openunlearning:  # refuses a method or benchmark it has not before anything is written
        from analysis.openunlearning import openunlearning_overrides

        overrides = [openunlearning_overrides(r) for r in records]
        ou_files = export.openunlearning_files(exp, records)
    probe(best_dir(exp.home), "the exported configs", "the experiment is unchanged")
    with _report_write_errors():
        paths = export.write(exp, records, ou_files)  # refuses a symlink before writing
    for r, yaml_path in zip(records, paths[::2], strict=True):
        job, info = r["job"], r["info"]
        objs = ", ".join(f"{k} {v:.4g}" for k, v in info["objectives"].items())
        stop = f" (stop after epoch {info['epoch']})" if job["train"]["stop_after"] else ""
        print(
            f"{job['method']}: trial {info['trial']} epoch {info['epoch']}{stop}, {objs} -> "
            f"{yaml_path}"
        )
        if "confirmed" in info:
            print(f"  {_confirmed_line(info['confirmed'])}")
    for r, text, path in zip(records, overrides, ou_files, strict=False):
        print(f"\n# open-unlearning equivalent of {r['job']['method']} (also {path}):\n{text}")


def _confirmed_line(c: dict) -> str:
    """What export says when confirmed means took part in its choice."""
    line = (
        f"chosen with the fresh-seed means of {c['means_used']} confirmed point(s) "
        f"({c['file']}) in place of their sweep values"
    )
    if c["point"] is None:
        return line + "; this point was not confirmed (its sweep value stood)"
    shown = ", ".join(
        f"{k} {s['mean']:.4g}"
        + ("" if s["low"] is None else f" [95%: {s['low']:.4g}, {s['high']:.4g}]")
        for k, s in c["point"]["objectives"].items()
    )
    return f"{line}; this point on {len(c['point']['seeds'])} fresh seeds: {shown}"


COMMANDS = {"analyze": cmd_analyze, "export": cmd_export}
