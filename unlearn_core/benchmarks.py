"""Benchmark registry: where each benchmark's data, target model and retain reference come from."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from unlearn_core import builtin
from unlearn_core.data.format import PromptFormat
from unlearn_core.doc_eval import DocParams
from unlearn_core.errors import UserError
from unlearn_core.paths import check_paths
from unlearn_core.suites import SUITES, EvalData, Setup, Suite


@dataclass(frozen=True)
class Benchmark:
    description: str
    builtin: bool  # data and models are generated and trained locally on first use
    family: str = "tofu"  # a SUITES key: data layout, evaluation suite, objectives
    data: str | None = None  # hub id (real benchmarks)
    target: str | None = None  # default target / retrain models on the hub (MUSE, DUSK)
    retrain: str | None = None
    params: DocParams | None = None  # document benchmarks' evaluation lengths


# The tiny models answer zero-shot (builtin.quick_facts); the hub benchmarks use every icl shot.
TINY_DOCS = DocParams(chunk_tokens=128, qa_new_tokens=16, verbatim_new_tokens=64, icl_shots=0)
BENCHMARKS = {
    "tiny-tofu": Benchmark(
        "built-in TOFU-shaped benchmark: 200 synthetic authors, tiny Llama", True
    ),
    "tiny-tofu-small": Benchmark(
        "40-author variant of tiny-tofu for tests; builds in a minute", True
    ),
    "tiny-muse": Benchmark(
        "built-in MUSE-shaped benchmark: news articles on synthetic people",
        True,
        "muse",
        params=TINY_DOCS,
    ),
    "tiny-dusk": Benchmark(
        "built-in DUSK-shaped benchmark: one forget and four retain documents",
        True,
        "dusk",
        params=TINY_DOCS,
    ),
    "tiny-muse-small": Benchmark(
        "test-sized tiny-muse (4 forget articles)", True, "muse", params=TINY_DOCS
    ),
    "tiny-dusk-small": Benchmark(
        "test-sized tiny-dusk (7 forget-document sections)", True, "dusk", params=TINY_DOCS
    ),
    "tofu": Benchmark(
        "TOFU (locuslab/TOFU or a local copy) with a model you name", False, data="locuslab/TOFU"
    ),
    "muse-news": Benchmark(
        "MUSE-News (BBC news); target/retrain: muse-bench/MUSE-News_*",
        False,
        "muse",
        "muse-bench/MUSE-News",
        "muse-bench/MUSE-News_target",
        "muse-bench/MUSE-News_retrain",
        DocParams(),
    ),
    "muse-books": Benchmark(
        "MUSE-Books (Harry Potter); target/retrain: muse-bench/MUSE-Books_*",
        False,
        "muse",
        "muse-bench/MUSE-Books",
        "muse-bench/MUSE-Books_target",
        "muse-bench/MUSE-Books_retrain",
        DocParams(),
    ),
    "dusk": Benchmark(
        "DUSK (AI-ISL/DUSK); target/retrain: AI-ISL/DUSK-target, -retrain",
        False,
        "dusk",
        "AI-ISL/DUSK",
        "AI-ISL/DUSK-target",
        "AI-ISL/DUSK-retrain",
        DocParams(chunk_tokens=1024, icl_shots=None),
    ),
}


def suite_of(benchmark: str) -> Suite:
    """The benchmark family's record: splits, views, evaluation, reference, training data."""
    return SUITES[get_benchmark(benchmark).family]


def default_split(benchmark: str) -> str:
    return suite_of(benchmark).default_split


def fits(benchmark: str, views: tuple[str, ...]) -> bool:
    """Whether a method reading these batch views can train on the benchmark's data."""
    return set(views) <= set(suite_of(benchmark).views)


def check_method(benchmark: str, method: str, views: tuple[str, ...]) -> None:
    if not fits(benchmark, views):
        qa_only = next(v for v in views if v not in suite_of(benchmark).views)
        raise UserError(
            f"method {method} needs question/answer data (view {qa_only}); "
            f"{benchmark} trains on documents: use a method that reads only the "
            "forget and retain text"
        )


def default_format(benchmark: str) -> PromptFormat:
    """The prompt format the benchmark's results use (its family's Suite.default_format)."""
    bench = get_benchmark(benchmark)
    return SUITES[bench.family].default_format(bench.builtin, bench.params)


def prompt_format(
    benchmark: str,
    template: str | None,
    system_prompt: str | None,
    date_string: str | None,
    base: PromptFormat | None = None,
) -> PromptFormat | None:
    """A user's prompt settings over `base` (None: the benchmark's default); None when nothing
    is given and there is no base. system_prompt "" means no system message."""
    if template is None and system_prompt is None and date_string is None:
        return base
    base = base or default_format(benchmark)
    system = base.system_prompt if system_prompt is None else (system_prompt or None)
    return dataclasses.replace(
        base,
        template=template or base.template,
        system_prompt=system,
        date_string=date_string or base.date_string,
    )


def check_split(benchmark: str, split: str) -> None:
    splits = suite_of(benchmark).splits
    if split not in splits:
        raise UserError(f"unknown split {split!r} for {benchmark}; accepted: {', '.join(splits)}")


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise UserError(f"unknown benchmark {name!r}; accepted: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def resolve(
    name: str,
    split: str,
    model: str | None = None,
    data: str | None = None,
    retain_model: str | None = None,
    retain_logs: str | None = None,
    fmt: PromptFormat | None = None,
) -> Setup:
    """Build (on first use) or locate everything the benchmark needs; user-given paths are checked
    first, so a mistyped one fails in milliseconds rather than after a build."""
    bench = get_benchmark(name)
    check_split(name, split)
    check_paths(model=model, data=data, retain_model=retain_model)
    if retain_logs is not None and not Path(retain_logs).is_file():
        raise UserError(f"retain logs {retain_logs!r} do not exist")
    suite = suite_of(name)
    if retain_logs is not None and suite.reference_from_logs is None:
        raise UserError(
            f"--retain-logs reads open-unlearning TOFU/MUSE logs; {suite.label} has none: give "
            "--retain-model (its reference is computed once and cached)"
        )
    fmt = fmt or default_format(name)
    if bench.builtin:
        retain_split = suite.builtin_retain(split)
        own_retain = not (retain_model or retain_logs)
        needed = ([] if model else ["full"]) + ([retain_split] if own_retain else [])
        built = builtin.model_dirs(name, needed)  # shipped (or rebuilt): nothing trains here
        target = model or str(built["full"])
        retain = retain_model or (str(built[retain_split]) if own_retain else None)
        own_format = None if fmt == default_format(name) else fmt
        cache = builtin.reference_path(name, split, own_format) if own_retain else None
        folder = str(builtin.data_dir(name))
        facts = {"suite": suite, "params": bench.params, "builtin": True}
        return Setup(name, split, folder, target, retain, retain_logs, cache, fmt, **facts)
    # real benchmarks: MUSE and DUSK default to their published target and retrain models
    model = model or bench.target
    retain_model = retain_model or (None if retain_logs else bench.retrain)
    if model is None:
        raise UserError("benchmark 'tofu' needs --model (a hub id or a local model folder)")
    if retain_model is None and retain_logs is None:
        raise UserError("benchmark 'tofu' needs --retain-model or --retain-logs for forget_quality")
    source = data or bench.data
    cache = None if retain_logs else reference_cache(name, split, retain_model, source, fmt)
    facts = {"suite": suite, "params": bench.params, "builtin": False}
    return Setup(name, split, source, model, retain_model, retain_logs, cache, fmt, **facts)


def reference_cache(name: str, split: str, retain_model: str, data: str, fmt: PromptFormat) -> Path:
    """Where a real benchmark's retain-model reference is cached: keyed by the benchmark, split,
    data source, prompt format and the retain model (a local folder also by its files' sizes and
    modification times, so retraining into the same folder computes it anew)."""
    stamp: list = [name, split, retain_model, data, dataclasses.asdict(fmt)]
    folder = Path(retain_model).expanduser()
    if folder.is_dir():
        stamp += sorted(
            (p.name, p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.iterdir()
            if p.is_file()
        )
    key = hashlib.sha256(json.dumps(stamp, default=str).encode()).hexdigest()[:16]
    return builtin.cache_root() / "references" / f"{name}-{split}-{key}.json"


def eval_data(setup: Setup) -> EvalData:
    """The benchmark's evaluation sets for the split (TOFU configs, or MUSE/DUSK sets)."""
    return setup.suite.load_eval(setup)


def write_json(path: Path, obj: object) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj))
    tmp.replace(path)
