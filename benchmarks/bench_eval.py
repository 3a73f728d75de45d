"""Time the full TOFU evaluation (forget10 + retain + real authors + world facts + holdout) of the
built-in target model, batched as shipped, against one example at a time; same numbers, both ways.

    python benchmarks/bench_eval.py [--benchmark tiny-tofu] [--split forget10] [--limit N]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch

from unlearn_core import builtin
from unlearn_core.benchmarks import eval_data, resolve
from unlearn_core.evaluate import EvalConfig
from unlearn_core.models import ModelConfig, load_model, load_tokenizer
from unlearn_core.tofu_eval import aggregate, per_sample, reference_from


def timed_eval(model, tok, setup, data, cfg: EvalConfig) -> tuple[float, dict]:
    start = time.perf_counter()
    ps = per_sample(model, tok, setup.fmt, data, cfg)
    return time.perf_counter() - start, ps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--benchmark", default="tiny-tofu", choices=list(builtin.VARIANTS))
    ap.add_argument("--split", default="forget10")
    ap.add_argument(
        "--limit", type=int, default=0, help="only the first N rows of each set (smoke)"
    )
    args = ap.parse_args()
    torch.set_num_threads(2)
    setup = resolve(args.benchmark, args.split)
    tok = load_tokenizer(setup.target_model)
    model = load_model(ModelConfig(setup.target_model), torch.device("cpu"))
    model.eval()
    data = eval_data(setup)
    if args.limit:
        sets = ("forget", "retain", "real_authors", "world_facts", "holdout")
        data = dataclasses.replace(data, **{k: getattr(data, k)[: args.limit] for k in sets})
    n_seq = sum(len(x) * (2 + len(x[0]["perturbed_answer"])) for x in (data.forget, data.retain))
    n_seq += sum(
        len(x) * (1 + len(x[0]["perturbed_answer"])) for x in (data.real_authors, data.world_facts)
    )
    n_gen = sum(len(x) for x in (data.forget, data.retain, data.real_authors, data.world_facts))
    print(
        f"{args.benchmark} {args.split}: {n_seq + len(data.forget) + len(data.holdout)} scored "
        f"sequences, {n_gen} generations"
    )
    t_batched, ps = timed_eval(model, tok, setup, data, EvalConfig())
    print(f"batched evaluation:        {t_batched:7.2f} s")
    t_single, ps1 = timed_eval(model, tok, setup, data, EvalConfig(batch_size=1, gen_batch_size=1))
    print(f"one example at a time:     {t_single:7.2f} s")
    ref = reference_from(ps, args.split)
    a, b = aggregate(ps, ref), aggregate(ps1, ref)
    worst = max(abs(a[k] - b[k]) / max(abs(a[k]), 1e-12) for k in a if k != "forget_quality")
    same_text = ps["forget"]["generation"] == ps1["forget"]["generation"]
    print(f"speed-up (single / batched): {t_single / t_batched:.1f}x")
    print(
        f"largest relative difference in aggregate metrics: {worst:.2e}; "
        f"forget generations identical: {same_text}"
    )
    print(
        f"model_utility {a['model_utility']:.4f}  forget_Q_A_ROUGE {a['forget_Q_A_ROUGE']:.4f}  "
        f"target {'meets' if t_batched < 20 else 'MISSES'} the 20 s budget"
    )
    assert np.isfinite(t_batched)


if __name__ == "__main__":
    main()
