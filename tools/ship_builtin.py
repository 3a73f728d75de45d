"""Maintainers only: regenerate built-in benchmark variants from the generator (on this machine)
and ship them inside the package (unlearn_core/builtin_data/ + MANIFEST.json). Users never need
this: they load the shipped files, or compare a rebuild with `unlearn-sweep prepare NAME
--rebuild`. Shipping new files changes every published tiny-benchmark number: do it only with a
BUILD_VERSION bump and say so in the commit.

    UNLEARN_SWEEP_CACHE=/tmp/build python tools/ship_builtin.py tiny-tofu-small [...]
"""

from __future__ import annotations

import argparse

import torch

from unlearn_core import builtin, shipped
from unlearn_core.benchmarks import resolve
from unlearn_core.evaluate import EvalConfig
from unlearn_core.job import get_reference
from unlearn_core.models import load_tokenizer
from unlearn_core.suites import SUITES


def ship(name: str) -> None:
    splits = builtin.train_splits(name)
    models = builtin.rebuild(name, splits)
    with builtin.using("rebuilt"):
        for split in SUITES[builtin.VARIANTS[name].family].splits:  # every split's reference
            setup = resolve(name, split)
            get_reference(
                setup, load_tokenizer(setup.target_model), EvalConfig(), torch.device("cpu")
            )  # writes <variant>/reference/<split>.json
    parts = ["data", "tokenizer", "reference", *(p.name for p in models.values())]
    shipped.ship(name, builtin.variant_dir(name), builtin.build_key(name), parts)
    total = sum(size for _, _, size in shipped.files(name))
    print(f"shipped {name}: {len(shipped.files(name))} files, {total / 2**20:.1f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("variants", nargs="+", choices=list(builtin.VARIANTS))
    torch.set_num_threads(2)
    for name in ap.parse_args().variants:
        ship(name)


if __name__ == "__main__":
    main()
