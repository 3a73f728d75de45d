"""Throughput of NPO unlearning trials on one GPU: a random-init Llama-3.2-1B-shaped model on
synthetic TOFU-sized data (forget10 + 400 retain rows), full fine-tuning and LoRA, evaluation
scoring, MFU, and trials/hour when k LoRA trials share the GPU (as Ray's num_gpus=1/k does).

    PYTHONPATH=. python benchmarks/bench_gpu.py [--size 1b|small|tiny] [--packs 1,2,4]
        [--packer process|ray] [--epochs E] [--json PATH]

Every timed trial runs in a fresh process (the project's GPU sweeps give each trial a new Ray
actor); packed trials start together at a barrier. `--size tiny` runs the same code on a CPU in
seconds, which is what tests/test_bench_gpu.py does.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import multiprocessing as mp
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from transformers import AutoModelForCausalLM, LlamaConfig

from unlearn_core.errors import UserError
from unlearn_core.logprobs import token_logprobs
from unlearn_core.methods import METHODS, npo
from unlearn_core.models import (
    ModelConfig,
    add_lora,
    frozen_reference,
    resolve_attention,
    resolve_dtype,
)
from unlearn_core.train import TrainConfig, unlearn

LLAMA_1B = dict(
    hidden_size=2048,
    num_hidden_layers=16,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=64,
    intermediate_size=8192,
    vocab_size=128256,
    rms_norm_eps=1e-5,
    max_position_embeddings=131072,
)
SIZES = {  # Llama-3.2-1B's shape (its llama3 RoPE scaling left out: it costs no FLOPs)
    "1b": LLAMA_1B,
    "small": dict(
        hidden_size=512,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
        intermediate_size=1536,
        vocab_size=32000,
    ),
    "20m": dict(  # ~20M parameters: bench_peer's and bench_precision's CPU size
        hidden_size=512,
        num_hidden_layers=5,
        num_attention_heads=8,
        num_key_value_heads=8,
        intermediate_size=1376,
        vocab_size=8192,
    ),
    "tiny": dict(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        intermediate_size=64,
        vocab_size=256,
    ),
}
BF16_SPEC_TFLOPS = 989.0  # H100/H200 SXM dense bf16, vendor datasheet
PAD_ID = 0
FLOPS = {  # per real token; N = parameters, tied embedding counted once (= the LM head's matmul)
    "full": "6*N*train_tokens + 2*N*ref_tokens",
    "lora": "4*N*train_tokens + 2*N*ref_tokens (LoRA weights' own FLOPs ignored)",
}


@dataclass(frozen=True)
class TrialSpec:
    """One NPO trial: E epochs over the forget rows, each paired with a sampled retain row."""

    size: str
    lora_r: int  # 0 = full fine-tuning
    epochs: int
    n_forget: int = 400  # TOFU forget10
    n_retain: int = 400
    prompt_len: int = 30  # mean tokens; TOFU's question with a chat prompt is ~30
    answer_len: int = 60  # mean answer tokens, as TOFU's
    seed: int = 0
    threads: int = 0  # CPU threads for torch (0: leave torch's default)
    eval_batch: int = 0  # > 0: also time no-grad scoring of forget+retain after training
    train: tuple[tuple[str, object], ...] = ()  # TrainConfig fields given with --train K=V

    def train_config(self, epochs: int) -> TrainConfig:
        return TrainConfig(epochs=epochs, seed=self.seed, **dict(self.train))


def train_options(pairs: list[str]) -> tuple[tuple[str, object], ...]:
    """--train KEY=VALUE pairs as TrainConfig values of each field's type (bool: on/off)."""
    kinds = {f.name: type(f.default) for f in dataclasses.fields(TrainConfig)}
    out = []
    for pair in pairs:
        key, _, value = pair.partition("=")
        key = key.replace("-", "_")
        if key not in kinds or key in ("epochs", "seed"):
            raise ValueError(f"--train {pair}: not a TrainConfig field other than epochs, seed")
        if kinds[key] is bool:
            out.append((key, value in ("on", "true", "1")))
        else:
            out.append((key, kinds[key](value)))
    TrainConfig(**dict(out))  # its own checks, now
    return tuple(out)


def synthetic_rows(n: int, view: str, spec: TrialSpec, vocab: int, seed: int) -> list[dict]:
    """n random QA rows with TOFU-like lengths; labels are -100 on the prompt, as encode_qa's."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(n):
        p = int(torch.randint(spec.prompt_len // 2, spec.prompt_len * 3 // 2 + 1, (), generator=g))
        a = int(torch.randint(spec.answer_len // 2, spec.answer_len * 3 // 2 + 1, (), generator=g))
        ids = torch.randint(1, vocab, (p + a,), generator=g).tolist()
        rows.append({view: {"input_ids": ids, "labels": [-100] * p + ids[p:]}})
    return rows


def build_model(spec: TrialSpec, device: torch.device) -> tuple[torch.nn.Module, int, str]:
    """Random-init model (nothing downloaded) with models.py's dtype/attention choice; LoRA by
    models.add_lora. Returns (model, N parameters of the base model, attention used)."""
    mcfg = ModelConfig(path=f"random-{spec.size}", lora_r=spec.lora_r)
    dtype = resolve_dtype(mcfg, device)
    attn = resolve_attention(mcfg, device, dtype)
    cfg = LlamaConfig(
        **SIZES[spec.size],
        tie_word_embeddings=True,
        pad_token_id=PAD_ID,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
    )
    torch.manual_seed(spec.seed)
    with device:  # initialise on the device: a 1B init on the host takes many seconds
        model = AutoModelForCausalLM.from_config(cfg, dtype=dtype, attn_implementation=attn)
    n_params = sum(p.numel() for p in model.parameters())  # parameters() yields tied ones once
    if spec.lora_r > 0:
        model = add_lora(model, mcfg)
    model.train()
    return model, n_params, attn


def counting(tokens: list[torch.Tensor]) -> Callable:
    """npo.loss that also records real (forget, retain, padded) token counts, without a sync."""

    def loss(batch: dict, model, ref_model, hp):
        f, r = batch["forget"]["attention_mask"], batch["retain"]["attention_mask"]
        tokens.append(
            torch.stack([f.sum(), r.sum(), torch.tensor(f.numel() + r.numel(), device=f.device)])
        )
        return npo.loss(batch, model, ref_model, hp)

    return loss


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_trial(spec: TrialSpec, wait: Callable[[], None] = lambda: None) -> dict:
    """Build, warm up one optimizer step, `wait` (for the other packed trials), then time one
    trial with the project's own loop (unlearn_core.train.unlearn) and NPO loss."""
    t_setup = time.time()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.threads:
        torch.set_num_threads(spec.threads)
    model, n_params, attn = build_model(spec, device)
    ref = frozen_reference(model)
    vocab = SIZES[spec.size]["vocab_size"]
    forget = synthetic_rows(spec.n_forget, "forget", spec, vocab, seed=1)
    retain = synthetic_rows(spec.n_retain, "retain", spec, vocab, seed=2)
    hp, tokens = npo.Hparams(), []
    method = dataclasses.replace(METHODS["npo"], loss=counting(tokens))
    warm = spec.train_config(1)
    unlearn(
        model,
        method,
        hp,
        warm,
        forget[: warm.batch_size * warm.grad_accum],
        retain,
        PAD_ID,
        ref_model=ref,
    )
    tokens.clear()
    free_memory(device)  # the warm-up's optimizer state
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    setup_s = time.time() - t_setup
    wait()
    sync(device)
    start = time.time()
    res = unlearn(
        model,
        method,
        hp,
        spec.train_config(spec.epochs),
        forget,
        retain,
        PAD_ID,
        ref_model=ref,
    )
    sync(device)
    end = time.time()
    f_tok, r_tok, padded = (int(x) for x in torch.stack(tokens).sum(0).tolist())
    out = dict(
        mode="lora" if spec.lora_r else "full",
        device=str(device),
        attention=attn,
        dtype=str(next(model.parameters()).dtype),
        n_params=n_params,
        epochs=spec.epochs,
        optimizer_steps=res.optimizer_steps,
        setup_s=setup_s,
        start=start,
        end=end,
        trial_s=end - start,
        train_tokens=f_tok + r_tok,
        ref_tokens=f_tok,
        pad_fraction=1 - (f_tok + r_tok) / padded,
        peak_mem_gib=torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None,
    )
    out["train_tokens_per_s"] = out["train_tokens"] / out["trial_s"]
    # FLOPS: forward+backward on forget and retain rows, plus the reference's forward on forget
    out["flops"] = ((4 if spec.lora_r else 6) * (f_tok + r_tok) + 2 * f_tok) * n_params
    if spec.eval_batch:
        out["eval"] = eval_throughput(model, forget + retain, spec.eval_batch, n_params, device)
    return out


@torch.no_grad()
def eval_throughput(model, rows: list[dict], batch: int, n_params: int, device) -> dict:
    """No-grad teacher-forced scoring, batched by length as evaluate.score_sequences does, with
    the same full-vocabulary fp32 log-softmax (logprobs.token_logprobs) on answer tokens."""
    from unlearn_core.data.format import collate

    model.eval()
    encs = sorted((next(iter(r.values())) for r in rows), key=lambda e: len(e["input_ids"]))
    sync(device)
    start, real = time.time(), 0
    for i in range(0, len(encs), batch):
        b = {k: v.to(device) for k, v in collate(encs[i : i + batch], PAD_ID).items()}
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        lp, mask = token_logprobs(logits, b["labels"])  # (B, T-1) each
        lp.sum(-1).cpu()  # per-sequence values leave the device, as in the real evaluation
        real += int(b["attention_mask"].sum())
    sync(device)
    secs = time.time() - start
    return dict(
        sequences=len(encs),
        tokens=real,
        seconds=secs,
        tokens_per_s=real / secs,
        flops=2 * n_params * real,
    )


def _worker(spec: TrialSpec, inbox, outbox) -> None:
    """One trial in a fresh process; 'ready' once built, then the trial on 'go'."""

    def wait_for_go() -> None:
        outbox.put(("ready", None))
        if inbox.get() != "go":
            raise RuntimeError("round cancelled")

    try:
        outbox.put(("done", run_trial(spec, wait_for_go)))
    except Exception:
        outbox.put(("error", traceback.format_exc()))


def run_processes(specs: list[TrialSpec]) -> list[dict]:
    """The specs together, one fresh process each, as the
    project's GPU sweeps run each trial in a new Ray actor (reuse_actors is off there): every
    trial pays its own cold caches (cuDNN attention plans per sequence length, allocator).
    The trials start together once all have built their models and warmed up."""
    # forkserver: children are forked from a server that imported the libraries but never touched
    # CUDA (a CUDA context cannot be forked), so each starts in a second, not an import's time
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "transformers", "peft", "unlearn_core.train"])
    outbox, inboxes = ctx.Queue(), [ctx.Queue() for _ in specs]
    procs = [
        ctx.Process(target=_worker, args=(s, q, outbox), daemon=True)
        for s, q in zip(specs, inboxes, strict=True)
    ]
    for p in procs:
        p.start()

    def collect(kind: str) -> list:
        msgs = [outbox.get(timeout=1800) for _ in specs]
        for tag, value in msgs:
            if tag == "error":
                raise RuntimeError("a trial process failed:\n" + value)
            assert tag == kind, f"expected {kind!r} from a worker, got {tag!r}"
        return [value for _, value in msgs]

    try:
        collect("ready")
        for q in inboxes:
            q.put("go")
        return collect("done")
    finally:
        for q in inboxes:
            q.put(None)  # frees a worker still waiting for 'go' after another one failed
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()


@contextmanager
def ray_packer(n: int, gpu: bool) -> Iterator[Callable[[list[TrialSpec]], list[dict]]]:
    """Ray tasks with num_gpus=1/k each (num_cpus=1 on a CPU-only machine), started together;
    max_calls=1 gives each trial a fresh worker process, as run_processes does."""
    import ray  # only for --packer ray; unlearn_core never imports it

    # address="local": a fresh instance, never a cluster some other program started here
    ray.init(
        address="local",
        num_cpus=mp.cpu_count() if gpu else n,
        include_dashboard=False,
        log_to_driver=False,
    )

    def run(specs: list[TrialSpec]) -> list[dict]:
        k = len(specs)
        gate = ray.remote(num_cpus=0)(_Gate).remote(k)

        def trial(spec: TrialSpec) -> dict:
            def wait() -> None:
                ray.get(gate.arrive.remote())
                while not ray.get(gate.ready.remote()):
                    time.sleep(0.01)

            return run_trial(spec, wait)

        shape = dict(num_gpus=1 / k, num_cpus=0) if gpu else dict(num_cpus=1)
        task = ray.remote(max_calls=1, **shape)(trial)
        return ray.get([task.remote(s) for s in specs])

    try:
        yield run
    finally:
        ray.shutdown()


class _Gate:
    """A barrier for Ray tasks: each arrives, then polls until all k have."""

    def __init__(self, k: int) -> None:
        self.k, self.n = k, 0

    def arrive(self) -> None:
        self.n += 1

    def ready(self) -> bool:
        return self.n >= self.k


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def matmul_tflops(device: torch.device) -> float:
    """Achievable dense matmul rate here: bf16 8192^3 on a GPU, fp32 512^3 on a CPU."""
    n, dtype = (8192, torch.bfloat16) if device.type == "cuda" else (512, torch.float32)
    a, b = (
        torch.randn(n, n, device=device, dtype=dtype),
        torch.randn(n, n, device=device, dtype=dtype),
    )
    for _ in range(3):
        a @ b
    sync(device)
    start, reps = time.perf_counter(), 10
    for _ in range(reps):
        a @ b
    sync(device)
    rate = 2 * n**3 * reps / (time.perf_counter() - start) / 1e12
    del a, b
    free_memory(device)
    return rate


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(0)
        return f"{p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}"
    return f"CPU {platform.machine()}, {mp.cpu_count()} cores, torch {torch.__version__}"


def pack_summary(k: int, trials: list[dict], peaks: dict[str, float | None]) -> dict:
    """All k trials together, from the first start to the last end (they start at one barrier)."""
    wall = max(t["end"] for t in trials) - min(t["start"] for t in trials)
    flops = sum(t["flops"] for t in trials)
    mems = [t["peak_mem_gib"] for t in trials if t["peak_mem_gib"] is not None]
    return dict(
        k=k,
        wall_s=wall,
        trials_per_hour=k * 3600 / wall,
        mean_trial_s=sum(t["trial_s"] for t in trials) / k,
        mean_setup_s=sum(t["setup_s"] for t in trials) / k,
        agg_train_tokens_per_s=sum(t["train_tokens"] for t in trials) / wall,
        peak_mem_gib_per_trial=max(mems) if mems else None,
        trials=[mode_summary(t, peaks) for t in trials],
        **{f"agg_mfu_{n}": flops / wall / (p * 1e12) if p else None for n, p in peaks.items()},
    )


def mode_summary(t: dict, peaks: dict[str, float | None]) -> dict:
    rate = t["flops"] / t["trial_s"]
    return {k: v for k, v in t.items() if k not in ("start", "end", "eval")} | {
        f"mfu_{n}": rate / (p * 1e12) if p else None for n, p in peaks.items()
    }


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def report(r: dict) -> None:
    """The table and the target lines."""
    print(
        f"\nmachine: {r['machine']}; size {r['size']} ({r['n_params'] / 1e6:.1f}M params), "
        f"{r['modes']['full']['dtype']}, attention {r['modes']['full']['attention']}, "
        f"train {r['train'] or 'TrainConfig defaults'}"
    )
    print(
        f"peaks: spec {r['peak_spec_tflops']} TFLOP/s, measured matmul "
        f"{r['peak_measured_tflops']:.3g} TFLOP/s; FLOPs: full {FLOPS['full']}; "
        f"lora {FLOPS['lora']}"
    )
    print(
        f"\n{'mode':<6}{'epochs':>7}{'trial s':>9}{'train tok/s':>13}{'peak GiB':>10}"
        f"{'MFU spec':>10}{'MFU meas':>10}{'pad':>7}"
    )
    for name, m in r["modes"].items():
        mem = "n/a" if m["peak_mem_gib"] is None else f"{m['peak_mem_gib']:.1f}"
        print(
            f"{name:<6}{m['epochs']:>7}{m['trial_s']:>9.2f}{m['train_tokens_per_s']:>13.0f}"
            f"{mem:>10}{pct(m['mfu_spec']):>10}{pct(m['mfu_measured']):>10}"
            f"{pct(m['pad_fraction']):>7}"
        )
    e = r["eval"]
    print(
        f"eval (no-grad scoring, {e['sequences']} seqs): {e['tokens_per_s']:.0f} tokens/s, "
        f"MFU spec {pct(e['mfu_spec'])}, measured {pct(e['mfu_measured'])}"
    )
    print(f"\npacking LoRA trials ({r['packer']}):")
    print(
        f"{'k':>3}{'wall s':>9}{'trials/h':>10}{'x of 1':>8}{'agg tok/s':>11}"
        f"{'agg MFU spec':>14}{'agg MFU meas':>14}{'GiB/trial':>11}{'setup s':>9}"
    )
    for p in r["packing"]:
        mem = "n/a" if p["peak_mem_gib_per_trial"] is None else f"{p['peak_mem_gib_per_trial']:.1f}"
        print(
            f"{p['k']:>3}{p['wall_s']:>9.2f}{p['trials_per_hour']:>10.1f}{p['speedup']:>8.2f}"
            f"{p['agg_train_tokens_per_s']:>11.0f}{pct(p['agg_mfu_spec']):>14}"
            f"{pct(p['agg_mfu_measured']):>14}{mem:>11}{p['mean_setup_s']:>9.1f}"
        )
    print()
    for t in r["targets"].values():
        print(f"target {'met' if t['met'] else 'MISSED'}: {t['what']} -- {t['value']}")


def targets(r: dict) -> dict:
    best = max(r["packing"], key=lambda p: p["agg_mfu_measured"])
    mfu = best["agg_mfu_spec"]
    last = r["packing"][-1]
    cpu = "" if r["device"] == "cuda" else " (CPU run: no bf16 peak there; not a GPU figure)"
    return {
        "aggregate_mfu": dict(
            what="aggregate MFU of packed LoRA trials >= 40% of the bf16 peak",
            met=mfu is not None and mfu >= 0.40,
            value=f"best k={best['k']}: {pct(mfu)} of spec, "
            f"{pct(best['agg_mfu_measured'])} of measured matmul{cpu}",
        ),
        "packing_speedup": dict(
            what="packing 4 LoRA trials >= 2.5x trials/hour of 1",
            met=last["k"] == 4 and last["speedup"] >= 2.5,
            value=f"k={last['k']}: {last['speedup']:.2f}x{cpu}",
        ),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--size", default="1b", choices=list(SIZES))
    ap.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs per trial (default: from a 1-epoch LoRA calibration run, so a "
        "LoRA trial lasts about --trial-seconds)",
    )
    ap.add_argument("--trial-seconds", type=float, default=25.0)
    ap.add_argument("--n-forget", type=int, default=400, help="forget rows (TOFU forget10: 400)")
    ap.add_argument("--n-retain", type=int, default=400, help="retain rows sampled")
    ap.add_argument("--prompt-len", type=int, default=30, help="mean prompt tokens")
    ap.add_argument("--answer-len", type=int, default=60, help="mean answer tokens")
    ap.add_argument("--lora-r", type=int, default=32)
    ap.add_argument("--eval-batch", type=int, default=64, help="sequences per scoring forward")
    ap.add_argument("--packs", default="1,2,4", help="LoRA trials per GPU to compare; needs 1")
    ap.add_argument("--packer", default="process", choices=("process", "ray"))
    ap.add_argument("--json", default=None, help="write every figure here")
    ap.add_argument(
        "--train",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a TrainConfig setting for every trial, e.g. bucket=on, batch_size=32, "
        "grad_accum=1, precision=bf16-mixed, liger=on (repeatable; default: TrainConfig's)",
    )
    args = ap.parse_args(argv)
    try:
        args.train = train_options(args.train)
    except (ValueError, UserError) as e:
        ap.exit(2, f"bench_gpu: {e}\n")
    packs = sorted({int(x) for x in args.packs.split(",")})
    if packs[0] != 1 or args.n_forget < 32 or args.lora_r < 1 or (args.epochs or 1) < 1:
        ap.exit(
            2,
            "bench_gpu: --packs must include 1, --n-forget >= 32 (one optimizer step), "
            "--lora-r >= 1, --epochs >= 1\n",
        )
    args.packs = packs
    return args


def measure(args: argparse.Namespace, device: torch.device) -> tuple[dict, dict[int, list]]:
    """The full fine-tuning trial (with evaluation), then each packing of LoRA trials, each trial
    in a fresh process."""
    # One thread per trial on a CPU: that path exists for the test, and OpenMP's spin-waits make
    # two threads on a busy 2-core machine many times slower than one.
    cpu = device.type == "cpu"
    base = TrialSpec(
        args.size,
        0,
        args.epochs or 1,
        args.n_forget,
        args.n_retain,
        args.prompt_len,
        args.answer_len,
        threads=1 if cpu else mp.cpu_count(),
        train=args.train,
    )
    if args.epochs is None:  # here, in a process as cold as a trial's
        cal = run_trial(dataclasses.replace(base, lora_r=args.lora_r))
        epochs = max(1, min(20, round(args.trial_seconds / cal["trial_s"])))
        print(f"calibration: one LoRA epoch took {cal['trial_s']:.2f} s -> {epochs} epochs/trial")
        base = dataclasses.replace(base, epochs=epochs)
        del cal
        free_memory(device)
    full = run_processes([dataclasses.replace(base, eval_batch=args.eval_batch)])[0]
    print(f"full fine-tuning trial: {full['trial_s']:.2f} s")
    packer = (
        ray_packer(max(args.packs), not cpu) if args.packer == "ray" else nullcontext(run_processes)
    )
    packed = {}
    with packer as run:
        for k in args.packs:
            threads = 1 if cpu else max(1, mp.cpu_count() // k)
            lora = dataclasses.replace(base, lora_r=args.lora_r, threads=threads)
            packed[k] = run([dataclasses.replace(lora, seed=i) for i in range(k)])
            print(f"{k} packed LoRA trial(s): {[round(t['trial_s'], 2) for t in packed[k]]} s")
    return full, packed


def summarise(args, device, peaks: dict, full: dict, packed: dict[int, list]) -> dict:
    packing = [pack_summary(k, t, peaks) for k, t in packed.items()]
    for p in packing:
        p["speedup"] = p["trials_per_hour"] / packing[0]["trials_per_hour"]
    ev = full["eval"]
    ev |= {
        f"mfu_{n}": ev["flops"] / ev["seconds"] / (p * 1e12) if p else None
        for n, p in peaks.items()
    }
    r = dict(
        command=" ".join(["python"] + sys.argv),
        date=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        machine=machine(device),
        device=device.type,
        size=args.size,
        model_config=SIZES[args.size],
        n_params=full["n_params"],
        lora_r=args.lora_r,
        packer=args.packer,
        train=dict(args.train),
        peak_spec_tflops=peaks["spec"],
        peak_measured_tflops=peaks["measured"],
        flops_formula=FLOPS,
        modes={"full": mode_summary(full, peaks), "lora": mode_summary(packed[1][0], peaks)},
        eval=ev,
        packing=packing,
    )
    r["targets"] = targets(r)
    return r


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(1)  # as the trials, so the measured matmul peak is theirs
    peaks = {
        "spec": BF16_SPEC_TFLOPS if device.type == "cuda" else None,
        "measured": matmul_tflops(device),
    }
    full, packed = measure(args, device)
    r = summarise(args, device, peaks, full, packed)
    report(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=1)
    assert all(math.isfinite(p["trials_per_hour"]) for p in r["packing"]), "non-finite timing"


if __name__ == "__main__":
    main()
