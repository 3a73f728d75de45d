"""Rebuild a built-in benchmark from scratch in a fresh cache folder (data, tokenizer, every
target and retain model) and report the build time and whether it is meaningful: the bars of
unlearn_core/builtin_check.py, for the rebuilt copy beside the shipped one. Users load the shipped
files and train nothing; this measures what `prepare NAME --rebuild` costs on a machine.

    python benchmarks/bench_builtin.py [--benchmark tiny-tofu] [--cache DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from unlearn_core import builtin, builtin_check


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--benchmark", default="tiny-tofu", choices=list(builtin.VARIANTS))
    ap.add_argument("--cache", help="cache folder to build in (default: a new temporary one)")
    args = ap.parse_args()
    cache = args.cache or tempfile.mkdtemp(prefix="bench-builtin-")
    os.environ["UNLEARN_SWEEP_CACHE"] = cache
    torch.set_num_threads(2)
    name = args.benchmark
    print(f"rebuilding {name} in {cache} with {os.cpu_count()} CPUs")
    start = time.perf_counter()
    builtin.rebuild(name, builtin.train_splits(name))
    print(
        f"build (data, tokenizer, {', '.join(builtin.train_splits(name))}): "
        f"{time.perf_counter() - start:7.1f} s"
    )
    start = time.perf_counter()
    figs = {copy: builtin_check.figures(name, copy) for copy in builtin.MODES}
    print(f"evaluation (shipped + rebuilt):         {time.perf_counter() - start:7.1f} s")
    ok = True
    for bar, value, met in builtin_check.check(name, figs["rebuilt"]):
        ok &= met
        shipped = figs["shipped"][bar.model][bar.metric]
        print(
            f"{bar.model:7s} {bar.metric:22s} want {bar.op} {bar.value:<8g} shipped "
            f"{shipped:10.4g}  rebuilt {value:10.4g}  {'ok' if met else 'MISSED'}"
        )
    print("meaningful" if ok else "NOT meaningful")


if __name__ == "__main__":
    main()
