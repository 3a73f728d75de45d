"""Source: where a job's data, target model, retain reference and prompt come from. JobConfig and
SweepConfig both nest it; it is checked at construction (nothing built) and resolved once, when a
job's context is built (job._context), which is where built-in models may be trained."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from unlearn_core.benchmarks import (
    check_split,
    default_split,
    get_benchmark,
    prompt_format,
    resolve,
)
from unlearn_core.config import from_plain
from unlearn_core.data.format import PromptFormat
from unlearn_core.errors import UserError
from unlearn_core.models import ModelConfig
from unlearn_core.paths import check_paths
from unlearn_core.suites import Setup


@dataclass(frozen=True)
class Source:
    benchmark: str = "tiny-tofu"  # the benchmark: its data, target and evaluation
    split: str | None = None  # forget split; None: the benchmark's (TOFU forget10, else forget)
    data: str | None = None  # data folder or hub id; None: the benchmark's
    model: str | None = None  # target model folder or hub id; None: the benchmark's target
    lora_r: int = 0  # LoRA rank on the target; 0 = full fine-tuning
    retain_model: str | None = None  # retain/retrain model for forget_quality or privleak
    retain_logs: str | None = None  # open-unlearning TOFU_EVAL/MUSE_EVAL.json of the retain model
    prompt: PromptFormat | None = None  # None: the benchmark's (benchmarks.default_format)

    def __post_init__(self) -> None:
        get_benchmark(self.benchmark)
        if self.split is None:
            object.__setattr__(self, "split", default_split(self.benchmark))
        check_split(self.benchmark, self.split)
        if self.lora_r < 0:
            raise UserError(f"lora_r must be >= 0 (0 = full fine-tuning), got {self.lora_r}")

    def check_paths(self) -> None:
        """User-given paths exist: fails in milliseconds, before any built-in benchmark is built."""
        check_paths(model=self.model, data=self.data, retain_model=self.retain_model)

    def resolve(self) -> Setup:
        """Locate (built-in benchmarks: build on first use) the data, target and reference."""
        return resolve(
            self.benchmark,
            self.split,
            model=self.model,
            data=self.data,
            retain_model=self.retain_model,
            retain_logs=self.retain_logs,
            fmt=self.prompt,
        )

    def target(self, setup: Setup, trust_remote_code: bool = False) -> ModelConfig:
        """The model a job trains: the given one or the benchmark's target (LoRA without a model
        is LoRA on the target), resolved from `setup` so building a config never trains one."""
        return ModelConfig(
            setup.target_model, trust_remote_code=trust_remote_code, lora_r=self.lora_r
        )


# Flags (and sweep-file keys) naming a Source: its fields, with the prompt given as three parts.
PROMPT_KEYS = ("template", "system_prompt", "date_string")
SOURCE_KEYS = tuple(f.name for f in dataclasses.fields(Source) if f.name != "prompt")


def source_from_options(opts: dict, base: dict | None = None) -> Source:
    """A Source from flat options (SOURCE_KEYS and PROMPT_KEYS) over `base` (a Source as
    to_plain writes it, e.g. an export's): --template, --system-prompt and --date-string change
    base's prompt, or the benchmark's default one; system_prompt "" means none."""
    given = {k: v for k, v in opts.items() if k not in PROMPT_KEYS}
    src = from_plain(Source, dict(base or {}) | given, "source")
    parts = [opts.get(k) for k in PROMPT_KEYS]
    return dataclasses.replace(src, prompt=prompt_format(src.benchmark, *parts, src.prompt))
