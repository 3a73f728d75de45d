"""Build a built-in benchmark from scratch in a fresh cache folder (target and retain models) and
report the build time and whether it is meaningful. TOFU-shaped: the target recalls the forget
answers (ROUGE-L recall >= 0.9) and general knowledge (real authors, world facts >= 0.8), and its
forget truth ratios differ from the retain model's (KS p = target forget_quality < 1e-6).
tiny-muse / tiny-dusk: the target continues forget passages verbatim (verbmem ROUGE-L F1 >= 0.8)
and the retrain model does not (<= 0.5); the target answers forget-only questions (>= 0.9) and the
retrain model does not (<= 0.3); both keep retain / shared knowledge (>= 0.9).

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
    family = builtin.VARIANTS[args.benchmark].family
    retain = "retain90" if family == "tofu" else "retrain"
    models = builtin.build_models(args.benchmark, ("full", retain))
    build_s = time.perf_counter() - start
    print(
        f"build (data, tokenizer, target, {retain}): {build_s:7.1f} s  "
        f"({'within' if build_s <= 300 else 'OVER'} the 5 min budget)"
    )
    if family != "tofu":
        documents(args.benchmark, family, models["full"], models[retain])
        return
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
        print(
            f"target {key:18s} {m[key]:.3g}  (want {sign} {threshold:g}: "
            f"{'ok' if met else 'MISSED'})"
        )
    print(f"model_utility {m['model_utility']:.4f}  retain_Q_A_ROUGE {m['retain_Q_A_ROUGE']:.4f}")
    print("meaningful" if ok else "NOT meaningful")


DOC_TARGETS = {  # family -> (metric, target must be, retrain must be): thresholds as (op, value)
    "muse": (
        ("forget_verbmem_ROUGE", (">=", 0.8), ("<=", 0.5)),
        ("forget_knowmem_ROUGE", (">=", 0.9), ("<=", 0.3)),
        ("retain_knowmem_ROUGE", (">=", 0.9), (">=", 0.9)),
    ),
    "dusk": (
        ("forget_verbmem_ROUGE", (">=", 0.8), ("<=", 0.5)),
        ("forget_specific_ROUGE", (">=", 0.9), ("<=", 0.3)),
        ("shared_ROUGE", (">=", 0.9), (">=", 0.9)),
        ("retain_specific_ROUGE", (">=", 0.9), (">=", 0.9)),
    ),
}


def documents(name: str, family: str, target, retrain) -> None:
    """Evaluate the target and retrain models of a document benchmark against DOC_TARGETS."""
    from unlearn_core.job import evaluate_model
    from unlearn_core.source import Source

    start = time.perf_counter()
    m = {
        k: evaluate_model(Source(name, "forget", model=str(p)), EvalConfig())[0]
        for k, p in (("target", target), ("retrain", retrain))
    }
    print(f"evaluation (target + retrain):        {time.perf_counter() - start:7.1f} s")
    ok = True
    for key, *wants in DOC_TARGETS[family]:
        for model, (op, value) in zip(("target", "retrain"), wants, strict=True):
            v = m[model][key]
            met = v >= value if op == ">=" else v <= value
            ok &= met
            print(
                f"{model:7s} {key:22s} {v:.3f}  (want {op} {value:g}: {'ok' if met else 'MISSED'})"
            )
    print(f"privleak: target {m['target']['privleak']:.1f}, retrain {m['retrain']['privleak']:.1f}")
    print("meaningful" if ok else "NOT meaningful")


if __name__ == "__main__":
    main()
