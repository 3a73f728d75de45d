"""The one command line, `unlearn-sweep`: prepare, methods, plan, unlearn, evaluate, sweep,
resume, status, confirm, analyze, export. The flags of unlearn, evaluate and sweep are generated
from the config dataclasses (flags.py). User errors print one line and exit 2; nothing is written
before the inputs are validated."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from sweeps.experiment import reported
from sweeps.interrupt import Interrupted
from unlearn_core.errors import TrialDiverged, UserError
from unlearn_sweep import analyze as analysis_cli

SHOWN = (
    "forget_quality",
    "forget_truth_ratio",
    "forget_Q_A_Prob",
    "forget_Q_A_ROUGE",
    "model_utility",
    "extraction_strength",
    "exact_memorization",
    "privleak",
    "mia_min_k",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2 (argparse prints usage too)
        raise UserError(f"{self.prog}: {message}")


def _parse_value(text: str) -> object:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def _hparams(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--hp expects NAME=VALUE, got {item!r}")
        out[key] = _parse_value(value)
    return out


def _add_source_args(p: argparse.ArgumentParser, names: tuple[str, ...]) -> None:
    """The Source flags (where data, target, reference and prompt come from)."""
    from unlearn_core.benchmarks import BENCHMARKS
    from unlearn_core.data.format import TEMPLATES, PromptFormat
    from unlearn_core.source import PROMPT_KEYS, Source
    from unlearn_sweep.flags import add_fields

    add_fields(p, Source, names, choices={"benchmark": tuple(BENCHMARKS)})
    add_fields(
        p,
        PromptFormat,
        PROMPT_KEYS,
        choices={"template": TEMPLATES},
        shown=dict.fromkeys(PROMPT_KEYS, "the benchmark's"),
    )


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trust-remote-code", action="store_true", help="let model repo code run (default: off)"
    )
    p.add_argument("--eval-batch-size", type=int, help="sequences per forward pass (default: 64)")
    p.add_argument(
        "--no-generate", action="store_true", help="no generation, no ROUGE/utility (default: off)"
    )


# TrainConfig fields the `unlearn` command sets; a flag left out keeps the field's default (or
# the value in the --config file), so each default lives only in TrainConfig.
TRAIN_FLAGS = (
    "lr",
    "epochs",
    "batch_size",
    "grad_accum",
    "weight_decay",
    "warmup_epochs",
    "schedule",
    "seed",
    "step_accounting",
    "precision",
    "gradient_checkpointing",
    "bucket",
    "pad_multiple",
    "micro_batch",
    "compile",
    "liger",
)
# SweepConfig fields given as flags of their own name; objectives, space and fixed have flags
# of their own shape (a comma-separated list, repeatable NAME=... pairs)
SWEEP_SHAPED = ("method", "source", "objectives", "space", "fixed")


def _sweep_keys() -> tuple[str, ...]:
    from sweeps.config import SweepConfig

    return tuple(f.name for f in dataclasses.fields(SweepConfig) if f.name not in SWEEP_SHAPED)


def build_parser() -> argparse.ArgumentParser:
    from search_spaces._common import LLM_OPTIMIZER, PRESETS
    from sweeps.config import SAMPLERS, SweepConfig
    from unlearn_core.source import SOURCE_KEYS
    from unlearn_core.steps import ACCOUNTINGS
    from unlearn_core.train import BUCKETS, MICRO_BATCHES, PRECISIONS, SCHEDULES, TrainConfig
    from unlearn_core.version import VERSION
    from unlearn_sweep.flags import add_fields

    ap = _Parser(prog="unlearn-sweep", description=__doc__)
    ap.add_argument("--version", action="version", version=f"unlearn-sweep {VERSION}")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser(
        "prepare",
        help="verify a built-in benchmark's shipped files (prints each sha256), or --rebuild it",
    )
    p.add_argument(
        "benchmark",
        help="tiny-tofu | tiny-tofu-small | tiny-muse | tiny-muse-small | tiny-dusk | "
        "tiny-dusk-small | all",
    )
    p.add_argument(
        "--rebuild",
        action="store_true",
        help="regenerate the data and retrain every model on this machine into the cache "
        "(UNLEARN_SWEEP_CACHE) and print its figures beside the shipped copy's; the shipped "
        "files are never replaced: load the rebuilt copy with UNLEARN_SWEEP_BUILTIN=rebuilt",
    )

    p = sub.add_parser(
        "methods",
        help="list every method, its hyperparameters, and the reference point a sweep evaluates "
        "first on both presets, with the source of each value",
    )
    p.add_argument("--method", help="show this method only (default: every method)")
    p.add_argument(
        "--family",
        choices=tuple(LLM_OPTIMIZER),
        default="tofu",
        help="benchmark family whose optimiser setting the reference starts from (default: tofu)",
    )
    p.add_argument(
        "--n-layers",
        type=int,
        help="decoder layers of the llm preset's model; layer values are fractions of it "
        f"(default: {PRESETS['llm'].n_layers})",
    )

    _add_plan_parser(sub)

    p = sub.add_parser("unlearn", help="run one unlearning job and print metrics before/after")
    p.add_argument(
        "--method", help="a method (see `unlearn-sweep methods`; default: the --config file's)"
    )
    p.add_argument(
        "--config",
        help="an exported config (best/<method>.yaml) to run again; the flags given override "
        "its values (default: none)",
    )
    p.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a method hyperparameter, e.g. --hp beta=0.1 (repeatable; default: the method's "
        "reference defaults)",
    )
    _add_source_args(p, SOURCE_KEYS)
    _add_eval_args(p)
    add_fields(
        p,
        TrainConfig,
        TRAIN_FLAGS,
        choices={
            "schedule": SCHEDULES,
            "step_accounting": ACCOUNTINGS,
            "precision": PRECISIONS,
            "bucket": BUCKETS,
            "micro_batch": MICRO_BATCHES,
        },
    )
    p.add_argument(
        "--eval-every-epoch",
        action="store_true",
        help="evaluate after every epoch, not only the last (default: off)",
    )
    p.add_argument(
        "--output", help="folder for the unlearned model and metrics.json (default: none, unsaved)"
    )

    p = sub.add_parser("sweep", help="multi-objective hyperparameter sweep, one study per method")
    p.add_argument(
        "--config",
        help="a sweep YAML file: keys are the options below (fixed: the --fix mapping, "
        "methods: --method's list); flags override it (default: none)",
    )
    p.add_argument(
        "--method",
        help="a method, a comma-separated list or 'all' (several: their studies run at once, "
        "--max-concurrent trials across them) (default: the file's)",
    )
    p.add_argument("--name", help="experiment name (default: derived from the methods)")
    p.add_argument("--output", help="folder holding experiments (default: ./experiments)")
    p.add_argument(
        "--objectives",
        help="comma-separated; default: forget_quality,model_utility "
        "(TOFU), forget_verbmem,model_utility (MUSE), forget_specific,shared_knowledge "
        "(DUSK)",
    )
    p.add_argument(
        "--space",
        action="append",
        metavar="NAME=LOW:HIGH[:log|:int]",
        help="override a search range (repeatable; default: the method's space)",
    )
    p.add_argument(
        "--fix",
        action="append",
        metavar="NAME=VALUE",
        help="fix a parameter instead of searching it (repeatable; default: none)",
    )
    add_fields(
        p,
        SweepConfig,
        _sweep_keys(),
        choices={
            "sampler": SAMPLERS,
            "preset": ("auto", *PRESETS),
            "step_accounting": ACCOUNTINGS,
            "precision": PRECISIONS,
        },
    )
    _add_source_args(p, SOURCE_KEYS)

    p = sub.add_parser(
        "resume", help="continue an interrupted sweep, or extend a finished one with --trials"
    )
    p.add_argument("experiment")
    add_fields(p, SweepConfig, ("trials",), shown={"trials": "the manifest's"})

    p = sub.add_parser("status", help="trials done/running/failed and the current Pareto front")
    p.add_argument("experiment")

    from sweeps.confirm import SEEDS, TOP

    p = sub.add_parser(
        "confirm",
        help="rerun each method's front points closest to the knee (and its exported point) on "
        "fresh seeds; record mean, std and a 95%% interval in DIR/confirmed.json",
        description="The winner's curse: a sweep measures each configuration on one seed, so its "
        "best point is partly the luckiest seed. confirm reruns the points that matter on seeds "
        "the sweep never used (the sweep's seed + 1000 + j) as Ray trials on the sweep's "
        "cluster; analyze draws the intervals and export chooses with the fresh-seed means. "
        "Seeds a point already has are not run again.",
    )
    p.add_argument("experiment", metavar="DIR")
    p.add_argument(
        "--top",
        type=int,
        default=TOP,
        metavar="K",
        help=f"front points per method, closest to the knee first (default: {TOP})",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=SEEDS,
        metavar="S",
        help=f"fresh training seeds per point (default: {SEEDS})",
    )

    p = sub.add_parser("evaluate", help="evaluate a saved model on a benchmark split")
    p.add_argument("--model", required=True, help="the model folder or hub id to evaluate")
    _add_source_args(p, tuple(k for k in SOURCE_KEYS if k not in ("model", "lora_r")))
    _add_eval_args(p)
    p.add_argument(
        "--downstream",
        help="comma-separated lm-evaluation-harness tasks to add, e.g. "
        "arc_challenge,mmlu (needs the [downstream] extra; default: none)",
    )
    p.add_argument("--output", help="file for the metrics JSON (default: none, printed only)")
    analysis_cli.add_parsers(sub)
    return ap


def _add_plan_parser(sub) -> None:
    from unlearn_core.plan import PLAN_PRECISIONS, STRATEGIES, PlanInputs
    from unlearn_core.train import PRECISIONS

    default = {f.name: f.default for f in dataclasses.fields(PlanInputs)}
    p = sub.add_parser(
        "plan",
        help="estimate one trial's memory per device from the model's config (no weights "
        "loaded) and refuse, naming the flag to change, a configuration that cannot fit",
    )
    p.add_argument("--model", required=True, help="hub id, model folder, or a config.json file")
    p.add_argument("--method", required=True, help="a method (see `unlearn-sweep methods`)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help=f"training precision; auto: {PLAN_PRECISIONS[0]}, the GPU default (default: auto)",
    )
    for name, kind, what in (
        ("lora_r", int, "LoRA rank; 0: full fine-tuning"),
        ("strategy", str, f"{' | '.join(STRATEGIES)} over --workers"),
        ("workers", int, "devices per trial"),
        ("batch_size", int, "micro-batch rows per device"),
        ("seq_len", int, "tokens per row"),
        ("eval_batch_size", int, "sequences per evaluation forward pass"),
    ):
        p.add_argument(
            f"--{name.replace('_', '-')}", type=kind, help=f"{what} (default: {default[name]})"
        )
    p.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="keep only each layer's input, recompute the rest in backward (default: off)",
    )
    p.add_argument(
        "--device-memory",
        type=float,
        metavar="GiB",
        help="memory per device to compare with (default: the visible GPU's, else none)",
    )


def cmd_plan(args: argparse.Namespace) -> None:
    from unlearn_core import plan as planning
    from unlearn_core.methods import get_method
    from unlearn_core.plan import GIB, ITEMS, PLAN_PRECISIONS, PlanInputs

    method = get_method(args.method)
    method.check_lora(args.lora_r or 0)
    if args.device_memory is not None and not args.device_memory > 0:
        raise UserError(f"--device-memory must be positive GiB, got {args.device_memory}")
    # the flags given; the rest keep PlanInputs' defaults
    given = _given(
        args, "lora_r", "strategy", "workers", "batch_size", "seq_len", "eval_batch_size"
    )
    precision = PLAN_PRECISIONS[0] if args.precision == "auto" else args.precision
    PlanInputs(None, True, **given)  # the flags' checks, before a config is read
    shape = planning.model_shape(planning.read_config(args.model))
    plan = PlanInputs(
        shape,
        reference=method.needs_reference(method.hparams()),
        views=len(method.views),
        precision=precision,
        gradient_checkpointing=args.gradient_checkpointing,
        **given,
    )
    breakdown = planning.estimate(plan)
    lora = f", LoRA r={plan.lora_r}" if plan.lora_r else ", full fine-tuning"
    print(
        f"{args.model}: {shape.n_params / 1e9:.3g}B parameters{lora}; {args.method}"
        f"{' (reference model)' if plan.reference else ''}, {precision}, {plan.strategy} x "
        f"{plan.workers}, batch {plan.batch_size} x {plan.seq_len} tokens"
    )
    for item in (*ITEMS, "total"):
        print(f"  {item:20s} {breakdown[item] / GIB:9.2f} GiB")
    device = args.device_memory
    if device is None:
        import torch

        if torch.cuda.is_available():
            device = torch.cuda.get_device_properties(0).total_memory / GIB
    if device is None:
        print("no device memory to compare with (give --device-memory GiB)")
        return
    line = planning.refusal(plan, device)
    if line is not None:
        raise UserError(line)
    print(f"fits: {breakdown['total'] / GIB:.1f} of {device:.1f} GiB per device")


def _sweep_configs(args: argparse.Namespace) -> tuple[list, str, Path]:
    """SweepConfigs from the YAML file (if any) with command-line flags taking precedence."""
    from search_spaces import SPACES
    from sweeps.config import SweepConfig, load_yaml
    from unlearn_core.benchmarks import fits
    from unlearn_core.methods import METHODS
    from unlearn_core.source import PROMPT_KEYS, SOURCE_KEYS, source_from_options

    opts = load_yaml(args.config) if args.config else {}
    opts |= _given(args, *_sweep_keys(), *SOURCE_KEYS, *PROMPT_KEYS)
    if args.objectives:
        opts["objectives"] = args.objectives.split(",")
    if args.space:
        opts["space"] = opts.get("space", {}) | dict(
            x.split("=", 1) for x in args.space if "=" in x
        )
        if any("=" not in x for x in args.space):
            raise UserError("--space expects NAME=LOW:HIGH[:log|:int]")
    if args.fix:
        opts["fixed"] = opts.get("fixed", {}) | _hparams(args.fix)
    methods = args.method or opts.pop("methods", None) or opts.pop("method", None)
    opts.pop("method", None)
    if not methods:
        raise UserError("give --method (a method, a comma-separated list, or 'all')")
    source = source_from_options(
        {k: opts.pop(k) for k in (*SOURCE_KEYS, *PROMPT_KEYS) if k in opts}
    )
    if isinstance(methods, str):
        methods = (
            [m for m in SPACES if fits(source.benchmark, METHODS[m].views)]
            if methods == "all"
            else methods.split(",")
        )
    name = (
        args.name
        or opts.pop("name", None)
        or "-".join(
            [
                "all" if len(methods) > 3 else "+".join(methods),
                source.benchmark,
                source.split,
            ]
        )
    )
    root = Path(args.output or opts.pop("output", None) or "experiments").expanduser().absolute()
    opts.pop("output", None)
    if "objectives" in opts:
        opts["objectives"] = tuple(opts["objectives"])
    try:
        cfgs = [SweepConfig(method=m, source=source, **opts) for m in methods]
    except TypeError as e:
        raise UserError(f"bad sweep option: {e}") from None
    if "/" in name or name in ("", ".", ".."):
        raise UserError(f"experiment name {name!r} must be a plain folder name")
    return cfgs, name, root / name


def cmd_sweep(args: argparse.Namespace) -> None:
    from sweeps.launch import run_sweep
    from sweeps.preflight import check_sweep

    cfgs, name, home = _sweep_configs(args)
    check_sweep(cfgs, name, home)  # every value a trial could get, before Ray or any write
    print(f"experiment {home}: {len(cfgs)} method(s), {cfgs[0].trials} trials each", flush=True)
    with _resumable(home), reported(home):  # Ctrl-C or a full disk: one line naming `resume`
        run_sweep(cfgs, home, name)
    _print_status(home)
    _confirm_at_end(home, cfgs[0].confirm)
    print(f"\nexperiment folder: {home}")


def _confirm_at_end(home: Path, top: int) -> None:
    """`sweep --confirm K` (kept in the manifest, so `resume` does it too)."""
    if top > 0:
        print(f"\nconfirming the {top} point(s) per method closest to the knee", flush=True)
        _print_confirmed(_confirm(home, top))


def _confirm(home: Path, top: int, seeds: int | None = None) -> Path:
    from sweeps.confirm import SEEDS, confirm

    return confirm(home, top, SEEDS if seeds is None else seeds)


def _print_confirmed(path: Path) -> None:
    from analysis.confirmed import lines

    for line in lines(path.parent):
        print(line)
    print(f"confirmed: {path}")


def cmd_confirm(args: argparse.Namespace) -> None:
    home = Path(args.experiment).expanduser().absolute()
    _print_confirmed(_confirm(home, args.top, args.seeds))


def cmd_resume(args: argparse.Namespace) -> None:
    from sweeps.launch import resume_sweep
    from sweeps.preflight import check_resume

    home = Path(args.experiment).expanduser().absolute()
    check_resume(home, args.trials)  # the files it reuses, before Ray starts
    with _resumable(home), reported(home):
        resume_sweep(home, args.trials)
    _print_status(home)
    from sweeps.experiment import read_manifest

    _confirm_at_end(home, int(read_manifest(home)["sweeps"][0].get("confirm", 0)))


@contextlib.contextmanager
def _resumable(home: Path) -> Iterator[None]:
    """A Ctrl-C that Tune did not catch (before its loop, or a second one) names `resume` too,
    once the experiment has its manifest."""
    from sweeps.experiment import manifest_path

    try:
        yield
    except KeyboardInterrupt:
        if not manifest_path(home).is_file():
            raise
        raise Interrupted(home) from None


def cmd_status(args: argparse.Namespace) -> None:
    from sweeps.experiment import read_manifest

    home = Path(args.experiment).expanduser().absolute()
    read_manifest(home)
    _print_status(home)


def _print_status(home: Path) -> None:
    from sweeps.status import study_summary

    for line in study_summary(home):
        print(line)


def _source(args: argparse.Namespace):
    """The Source the flags of `evaluate` name."""
    from unlearn_core.source import PROMPT_KEYS, SOURCE_KEYS, source_from_options

    keys = [k for k in SOURCE_KEYS if k != "lora_r"]  # evaluate trains nothing: no --lora-r
    return source_from_options(_given(args, *keys, *PROMPT_KEYS))


def _print_metrics(before: dict | None, after: dict) -> None:
    keys = [k for k in SHOWN if k in after] + sorted(k for k in after if k not in SHOWN)
    print(
        f"{'metric':28s} {'before':>12s} {'after':>12s}"
        if before
        else f"{'metric':28s} {'value':>12s}"
    )
    for k in keys:
        b = f"{before[k]:12.4g}" if before and k in before else ""
        print(f"{k:28s} {b:>12s} {after[k]:12.4g}" if before else f"{k:28s} {after[k]:12.4g}")


def _check_output(path: str | None) -> Path | None:
    if path is None:
        return None
    out = Path(path)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"output {path!r} exists and is not an empty folder; choose another")
    parent = out.parent if out.parent != Path("") else Path(".")
    if not os.access(parent if parent.exists() else Path("."), os.W_OK):
        raise UserError(f"cannot write to {parent}")
    return out


def cmd_prepare(args: argparse.Namespace) -> None:
    from unlearn_core import builtin, shipped

    names = list(builtin.VARIANTS) if args.benchmark == "all" else [args.benchmark]
    if names[0] not in builtin.VARIANTS:
        raise UserError(
            f"unknown built-in benchmark {args.benchmark!r}; accepted: "
            f"{', '.join(builtin.VARIANTS)}, all"
        )
    if args.rebuild:
        for name in names:
            _rebuild(name)
        return
    count = 0
    for name in names:  # `sha256sum -c` reads these lines inside unlearn_core/builtin_data
        for rel, sha, _ in shipped.files(name):
            print(f"{sha}  {rel}")
            count += 1
    print(f"{count} shipped files match {shipped.MANIFEST}", file=sys.stderr)


def _rebuild(name: str) -> None:
    """Retrain a variant into the cache, then its bars: shipped copy beside rebuilt copy."""
    import time

    from unlearn_core import builtin, builtin_check
    from unlearn_core.write_errors import probe

    # before any training: a cache we cannot write is one line, not a traceback minutes in
    probe(builtin.cache_root(), "the rebuilt copy", "set UNLEARN_SWEEP_CACHE to a writable folder")
    start = time.perf_counter()
    builtin.rebuild(name, builtin.train_splits(name))
    print(f"rebuilt {name} in {builtin.variant_dir(name)} ({time.perf_counter() - start:.0f} s)")
    figs = {copy: builtin_check.figures(name, copy) for copy in builtin.MODES}
    print(f"{'model':7s} {'metric':22s} {'bar':>10s} {'shipped':>10s} {'rebuilt':>10s}")
    missed = []
    for bar, value, met in builtin_check.check(name, figs["rebuilt"]):
        shipped_value = figs["shipped"][bar.model][bar.metric]
        print(
            f"{bar.model:7s} {bar.metric:22s} {bar.op + format(bar.value, 'g'):>10s} "
            f"{shipped_value:10.4g} {value:10.4g}{'' if met else '  MISSED'}"
        )
        missed += [] if met else [bar.metric]
    for key in ("model_utility", "privleak"):
        shipped_value, value = figs["shipped"]["target"][key], figs["rebuilt"]["target"][key]
        print(f"{'target':7s} {key:22s} {'':>10s} {shipped_value:10.4g} {value:10.4g}")
    if missed:
        print(f"the rebuilt {name} MISSES {len(missed)} bar(s): {', '.join(missed)}")
        sys.exit(1)
    print(
        f"the rebuilt {name} passes every bar; the shipped files are unchanged (load the "
        "rebuilt copy with UNLEARN_SWEEP_BUILTIN=rebuilt)"
    )


def cmd_methods(args: argparse.Namespace) -> None:
    from search_spaces import reference_point
    from search_spaces._common import PRESETS, SpaceOptions
    from unlearn_core.methods import METHODS, get_method

    names = [args.method] if args.method else list(METHODS)
    for name in names:
        get_method(name)  # an unknown name: one line naming the accepted ones
    # a sweep resolves the depth from its model; here the tiny model's and --n-layers (or 32)
    opts = {
        p: SpaceOptions(p, n_layers=args.n_layers if p == "llm" else None, family=args.family)
        for p in PRESETS
    }
    head = "  ".join(f"{f'{p} ({o.depth} layers)':18s}" for p, o in opts.items())
    for name in names:
        m = METHODS[name]
        fields = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(m.hparams))
        ref = " [reference model]" if m.needs_reference(m.hparams()) else ""
        print(f"{name:14s} {m.description}{ref}\n{'':14s} hyperparameters: {fields or '(none)'}")
        # the reference point, preset by preset; a source shared by both presets is named once
        points = {p: reference_point(name, o) for p, o in opts.items()}
        keys = list(dict.fromkeys(k for pt in points.values() for k in pt))
        w = max(18, *(len(k) + 2 for k in keys))
        print(f"{'':16s}{f'reference ({args.family})':{w}s}{head}  source")
        for key in keys:
            refs = [pt.get(key) for pt in points.values()]
            values = "  ".join(f"{_shown(r.value) if r else '-':18s}" for r in refs)
            sources = [f"{p}: {r.source}" for p, r in zip(opts, refs, strict=True) if r]
            if len({r.source for r in refs if r}) == 1:
                sources = [next(r.source for r in refs if r)]
            print(f"{'':16s}{key:{w}s}{values}  {'; '.join(sources)}")


def _shown(value: object) -> str:
    """A reference value as a user would type it: 1e-05, 0.01, (5, 6, 7), constant."""
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _eval_config(args: argparse.Namespace):
    from unlearn_core.evaluate import EvalConfig

    if args.eval_batch_size is not None and args.eval_batch_size <= 0:
        raise UserError(f"--eval-batch-size must be positive, got {args.eval_batch_size}")
    given = {} if args.eval_batch_size is None else {"batch_size": args.eval_batch_size}
    return EvalConfig(**given, generate=not args.no_generate)


EXPORT_SECTIONS = ("job", "info")


def read_export(path: str) -> tuple[dict, dict]:
    """The job and info sections of an exported config (`export` writes them); the job section
    is checked on its own here, so a bad file is named before any flag is applied."""
    from sweeps.config import read_yaml
    from unlearn_core.job import job_from_dict

    doc = read_yaml(path, f"config {path!r} does not exist; give an exported best/<method>.yaml")
    if not isinstance(doc, dict) or "job" not in doc:
        raise UserError(f"{path} is not an exported config; it needs the keys job and info")
    unknown = sorted(set(doc) - set(EXPORT_SECTIONS))
    if unknown:
        raise UserError(
            f"{path}: unknown key {unknown[0]!r}; accepted: {', '.join(EXPORT_SECTIONS)}"
        )
    try:
        job_from_dict(doc["job"])
    except UserError as e:
        raise UserError(f"{path}: {e}") from None
    info = doc.get("info") or {}
    return doc["job"], info if isinstance(info, dict) else {}


def _given(args: argparse.Namespace, *names: str) -> dict:
    return {n: getattr(args, n) for n in names if getattr(args, n) is not None}


def job_dict(args: argparse.Namespace, base: dict) -> dict:
    """`base` (an export's job section, or {}) with every flag given on the command line over
    it; what no one gives keeps the JobConfig field's default."""
    from unlearn_core.config import to_plain
    from unlearn_core.source import PROMPT_KEYS, SOURCE_KEYS, source_from_options

    d = dict(base)
    if args.method and base.get("method", args.method) != args.method:
        raise UserError(
            f"--method {args.method} contradicts the config's method {base['method']} (its "
            "hyperparameters are that method's)"
        )
    d |= _given(args, "method")
    d["hparams"] = dict(base.get("hparams") or {}) | _hparams(args.hp)
    flags = _given(args, *SOURCE_KEYS, *PROMPT_KEYS)
    d["source"] = to_plain(source_from_options(flags, base.get("source")))
    d["train"] = dict(base.get("train") or {}) | _given(args, *TRAIN_FLAGS)
    d["eval"] = dict(base.get("eval") or {})
    checked = dataclasses.asdict(_eval_config(args))  # the two eval flags
    if args.eval_batch_size is not None:
        d["eval"]["batch_size"] = checked["batch_size"]
    if args.no_generate:
        d["eval"]["generate"] = False
    if args.trust_remote_code:
        d["trust_remote_code"] = True
    return d


def cmd_unlearn(args: argparse.Namespace) -> None:
    from unlearn_core.job import job_from_dict, run_job

    base, info = read_export(args.config) if args.config else ({}, {})
    if not args.method and not base:
        raise UserError("give --method (see `unlearn-sweep methods`) or --config best/METHOD.yaml")
    job = job_from_dict(job_dict(args, base))
    out = _check_output(args.output)
    res = run_job(job, eval_every=1 if args.eval_every_epoch else 0, progress=True)
    _finish_unlearn(job, res, out)
    expected = info.get("metrics") or {}
    both = [k for k in expected if k in res.after]
    shown = [k for k in SHOWN if k in both] + sorted(k for k in both if k not in SHOWN)
    if shown:
        print(f"\nagainst what the sweep measured ({args.config}):")
        for k in shown:
            print(f"  {k:28s} sweep {expected[k]:12.4g}   now {res.after[k]:12.4g}")


def _finish_unlearn(job, res, out: Path | None) -> None:
    t = res.train
    print(
        f"{job.method}: {t.optimizer_steps} optimizer steps, effective batch {t.effective_batch}, "
        f"world size {t.world_size}, seed {t.seed}, {t.wall_time_s:.1f} s"
    )
    _print_metrics(res.before, res.after)
    if out is not None:
        from unlearn_core.job import save_job

        save_job(out, job, res)
        print(f"saved model and metrics to {out}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    from unlearn_core.job import evaluate_model

    out = Path(args.output) if args.output else None
    if out is not None and out.exists():
        raise UserError(f"output {args.output!r} exists; choose another")
    if args.downstream:
        from unlearn_core.downstream import require_lm_eval

        require_lm_eval()  # before the evaluation, not after it
    cfg = _eval_config(args)
    metrics, _ = evaluate_model(_source(args), cfg, trust_remote_code=args.trust_remote_code)
    if args.downstream:
        from unlearn_core.downstream import downstream
        from unlearn_core.models import ModelConfig, load_model, load_tokenizer

        model = load_model(ModelConfig(args.model, trust_remote_code=args.trust_remote_code))
        tok = load_tokenizer(args.model, args.trust_remote_code)
        metrics |= downstream(model.eval(), tok, args.downstream.split(","), cfg.batch_size)
    _print_metrics(None, metrics)
    if out is not None:
        out.write_text(json.dumps(metrics, indent=2))


COMMANDS = {
    "prepare": cmd_prepare,
    "methods": cmd_methods,
    "plan": cmd_plan,
    "unlearn": cmd_unlearn,
    "evaluate": cmd_evaluate,
    "sweep": cmd_sweep,
    "resume": cmd_resume,
    "status": cmd_status,
    "confirm": cmd_confirm,
    **analysis_cli.COMMANDS,
}


def _quiet_libraries() -> None:
    """Our own progress bars, and the hub's download bars (unlearn_core.models hides
    transformers' per-load bars). Set through the environment, which transformers reads when it
    loads: importing it here would cost every command, `--version` included, a second and a
    half."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _quiet_libraries()
    try:
        args = build_parser().parse_args(argv)
        COMMANDS[args.command](args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except TrialDiverged as e:
        print(f"diverged: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Interrupted as e:  # Ctrl-C during a sweep: the state is saved, `resume` continues
        print(f"error: {e}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
