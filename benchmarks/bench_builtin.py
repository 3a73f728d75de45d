"""Build a built-in benchmark from scratch in a fresh cache folder (target and retain90 models) and
report the build time and whether it is meaningful: the target recalls the forget answers (ROUGE-L
recall >= 0.9) and general knowledge (real authors, world facts >= 0.8), and its forget truth
ratios differ from the retain model's (KS p = target forget_quality < 1e-6).

    python benchmarks/bench_builtin.py [--benchmark tiny-tofu] [--cache DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from unlearn_core import builtin
from unlearn_core.benchmarks import eval_data, resolve
from unlearn_core.evaluate import EvalConfig
from unlearn_core.job import get_reference
from unlearn_core.models import ModelConfig, load_model, load_tokenizer
from unlearn_core.tofu_eval import aggregate, per_sample

TARGETS = {  # metric -> (threshold, higher must be) for the target model on forget10
    "forget_Q_A_ROUGE": (0.9, True),
    "ra_Q_A_ROUGE": (0.8, True),
    "wf_Q_A_ROUGE": (0.8, True),
    "forget_quality": (1e-6, False),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--benchmark", default="tiny-tofu", choices=list(builtin.VARIANTS))
    ap.add_argument("--cache", help="cache folder to build in (default: a new temporary one)")
    args = ap.parse_args()
    cache = args.cache or tempfile.mkdtemp(prefix="bench-builtin-")
    os.environ["UNLEARN_SWEEP_CACHE"] = cache
    torch.set_num_threads(2)
    cpu = torch.device("cpu")
    print(f"building {args.benchmark} in {cache} with {os.cpu_count()} CPUs")
    start = time.perf_counter()
    builtin.build_models(args.benchmark, ("full", "retain90"))
    build_s = time.perf_counter() - start
    print(f"build (data, tokenizer, target, retain90): {build_s:7.1f} s  "
          f"({'within' if build_s <= 300 else 'OVER'} the 5 min budget)")
    start = time.perf_counter()
    setup = resolve(args.benchmark, "forget10")
    tok = load_tokenizer(setup.target_model)
    reference = get_reference(setup, tok, EvalConfig(), cpu)
    model = load_model(ModelConfig(setup.target_model), cpu)
    model.eval()
    m = aggregate(per_sample(model, tok, setup.fmt, eval_data(setup), EvalConfig()), reference)
    print(f"evaluation (retain reference + target):    {time.perf_counter() - start:7.1f} s")
    ok = True
    for key, (threshold, higher) in TARGETS.items():
        met = m[key] >= threshold if higher else m[key] < threshold
        ok &= met
        sign = ">=" if higher else "<"
        print(f"target {key:18s} {m[key]:.3g}  (want {sign} {threshold:g}: "
              f"{'ok' if met else 'MISSED'})")
    print(f"model_utility {m['model_utility']:.4f}  retain_Q_A_ROUGE {m['retain_Q_A_ROUGE']:.4f}")
    print("meaningful" if ok else "NOT meaningful")


if __name__ == "__main__":
    main()
