"""Benchmark registry: where each benchmark's data, target model and retain reference come from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from unlearn_core import builtin
from unlearn_core.data.format import PromptFormat
from unlearn_core.data.tofu import load_config, split_configs
from unlearn_core.errors import UserError
from unlearn_core.paths import check_paths
from unlearn_core.tofu_eval import TofuEvalData


@dataclass(frozen=True)
class Benchmark:
    description: str
    builtin: bool  # data and models are generated and trained locally on first use


BENCHMARKS = {
    "tiny-tofu": Benchmark("built-in TOFU-shaped benchmark: 200 synthetic authors, tiny Llama",
                           True),
    "tiny-tofu-small": Benchmark("40-author variant of tiny-tofu for tests; builds in a minute",
                                 True),
    "tofu": Benchmark("TOFU (locuslab/TOFU or a local copy) with a model you name", False),
}


@dataclass(frozen=True)
class Setup:
    """Everything resolved for one (benchmark, split): paths, prompt format, reference source."""

    benchmark: str
    split: str
    data: str  # local folder or hub id
    target_model: str
    retain_model: str | None  # evaluated once to get the reference, unless retain_logs is given
    retain_logs: str | None  # an open-unlearning TOFU_EVAL.json of the retain model
    reference_cache: Path | None
    fmt: PromptFormat


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise UserError(f"unknown benchmark {name!r}; accepted: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def resolve(
    name: str, split: str, model: str | None = None, data: str | None = None,
    retain_model: str | None = None, retain_logs: str | None = None,
    fmt: PromptFormat | None = None,
) -> Setup:
    """Build (on first use) or locate everything the benchmark needs; user-given paths are checked
    first, so a mistyped one fails in milliseconds rather than after a build."""
    bench = get_benchmark(name)
    configs = split_configs(split)
    check_paths(model=model, data=data, retain_model=retain_model)
    if retain_logs is not None and not Path(retain_logs).is_file():
        raise UserError(f"retain logs {retain_logs!r} do not exist")
    if bench.builtin:
        own_retain = not (retain_model or retain_logs)
        needed = ([] if model else ["full"]) + ([configs["retain"]] if own_retain else [])
        built = builtin.build_models(name, needed)  # trained concurrently when both are missing
        target = model or str(built["full"])
        retain = retain_model or (str(built[configs["retain"]]) if own_retain else None)
        cache = builtin.reference_path(name, split) if own_retain else None
        return Setup(name, split, str(builtin.data_dir(name)), target, retain, retain_logs, cache,
                     fmt or PromptFormat())
    if model is None:
        raise UserError("benchmark 'tofu' needs --model (a hub id or a local model folder)")
    if retain_model is None and retain_logs is None:
        raise UserError("benchmark 'tofu' needs --retain-model or --retain-logs for forget_quality")
    return Setup(name, split, data or "locuslab/TOFU", model, retain_model, retain_logs, None,
                 fmt or PromptFormat())


def eval_data(setup: Setup) -> TofuEvalData:
    c = split_configs(setup.split)
    return TofuEvalData(
        split=setup.split,
        forget=load_config(setup.data, c["forget_perturbed"]),
        retain=load_config(setup.data, c["retain_perturbed"]),
        real_authors=load_config(setup.data, c["real_authors"]),
        world_facts=load_config(setup.data, c["world_facts"]),
        holdout=load_config(setup.data, c["holdout"]),
    )


def write_json(path: Path, obj: object) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj))
    tmp.replace(path)
