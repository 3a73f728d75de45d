"""Per precision (TrainConfig.precision): the fraction of weights one epoch of NPO+GD at lr 1e-5
actually changes, and peak memory (issue 16, item 3). Pure bf16 rounds most AdamW updates away.

    PYTHONPATH=. python benchmarks/bench_precision.py [--device cpu|cuda] [--size 20m|1b]
        [--n-forget 104] [--batch-size 8] [--grad-accum 1]

The model starts in bf16, as models.py loads one on a GPU; each precision trains a copy in a
fresh process (so peak memory is its own): CPU peak RSS above the RSS before training
(resource.ru_maxrss), GPU torch.cuda.max_memory_allocated. The fraction compares every weight
with its bf16 starting value.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

import psutil
import torch
from bench_gpu import PAD_ID, SIZES, TrialSpec, build_model, sync, synthetic_rows

from unlearn_core.methods import METHODS, npo
from unlearn_core.models import frozen_reference
from unlearn_core.train import TrainConfig, unlearn

PRECISIONS = ("bf16", "bf16-mixed", "fp32")


def measure(precision: str, args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    spec = TrialSpec(
        args.size, 0, 1, args.n_forget, args.n_forget, args.prompt_len, args.answer_len
    )
    model, n_params, _ = build_model(spec, device)
    model = model.to(torch.bfloat16)
    ref = frozen_reference(model)
    vocab = SIZES[args.size]["vocab_size"]
    forget = synthetic_rows(args.n_forget, "forget", spec, vocab, seed=1)
    retain = synthetic_rows(args.n_forget, "retain", spec, vocab, seed=2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = TrainConfig(
        lr=1e-5,
        epochs=1,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        warmup_epochs=0,
        schedule="constant",
        precision=precision,
    )
    rss0 = psutil.Process().memory_info().rss
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    sync(device)
    start = time.perf_counter()
    res = unlearn(model, METHODS["npo"], npo.Hparams(), cfg, forget, retain, PAD_ID, ref_model=ref)
    sync(device)
    wall = time.perf_counter() - start
    changed = sum(int((p.float() != before[n].float()).sum()) for n, p in model.named_parameters())
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:  # ru_maxrss is in KiB on Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss0
    return {
        "precision": precision,
        "n_params": n_params,
        "steps": res.optimizer_steps,
        "updated": changed / n_params,
        "peak_mib": peak / 2**20,
        "wall_s": wall,
        "weights": str(next(model.parameters()).dtype),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--size", default="20m", choices=list(SIZES))
    ap.add_argument("--n-forget", type=int, default=104, help="forget rows: one epoch")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--prompt-len", type=int, default=8, help="mean prompt tokens")
    ap.add_argument("--answer-len", type=int, default=16, help="mean answer tokens")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = ap.parse_args()
    ctx = mp.get_context("spawn")  # a fresh process per precision: its own peak memory
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        rows = [pool.apply(measure, (p, args)) for p in PRECISIONS]
    first = rows[0]
    print(
        f"{args.size} ({first['n_params'] / 1e6:.1f}M parameters) on {args.device}, NPO+GD, "
        f"lr 1e-5 constant, one epoch = {first['steps']} steps of "
        f"{args.batch_size}x{args.grad_accum}, weights start in bf16"
    )
    print(f"{'precision':<11} {'weights':<15} {'updated':>8} {'peak MiB':>9} {'wall s':>7}")
    for r in rows:
        print(
            f"{r['precision']:<11} {r['weights']:<15} {r['updated']:>8.2%} "
            f"{r['peak_mib']:>9.0f} {r['wall_s']:>7.1f}"
        )


if __name__ == "__main__":
    main()
