"""The same NPO+GD trial through this project's loop and through a minimal Hugging Face `Trainer`
subclass written the way open-unlearning writes its trainers (issue 16, item 4), in one process,
alternating; prints the ratios of wall time and of tokens/s (target: ours <= 0.6x the Trainer's).

    PYTHONPATH=. python benchmarks/bench_peer.py [--device cpu|cuda] [--size 20m|1b]
        [--steps 40] [--repeats 2] [--batch-size 4] [--precision fp32|bf16-mixed|bf16]

Same random-init Llama-shaped model (bench_gpu's SIZES, copied from one seeded init), same
synthetic forget/retain rows, effective batch, optimizer steps, AdamW settings, schedule and
precision. Each side's time covers its whole trial call: our `unlearn` (Accelerator, optimizer,
loop) and the Trainer's construction plus `train()`. The reference model is built outside both.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
import tempfile
import time

import torch
from bench_gpu import PAD_ID, SIZES, TrialSpec, build_model, sync, synthetic_rows
from transformers import Trainer, TrainingArguments

from unlearn_core.data.format import collate
from unlearn_core.logprobs import npo_loss, sequence_nll
from unlearn_core.methods import METHODS, npo
from unlearn_core.models import frozen_reference
from unlearn_core.train import TrainConfig, unlearn

BETA, GAMMA, ALPHA = 0.1, 1.0, 1.0  # npo.Hparams' defaults (open-unlearning's NPO.yaml)


class ForgetRetain(torch.utils.data.Dataset):
    """open-unlearning's ForgetRetainDataset: item i is forget[i] with a retain row drawn from the
    global torch RNG."""

    def __init__(self, forget: list[dict], retain: list[dict]) -> None:
        self.forget, self.retain = forget, retain

    def __len__(self) -> int:
        return len(self.forget)

    def __getitem__(self, i: int) -> dict:
        j = int(torch.randint(len(self.retain), ()))
        return {"forget": self.forget[i]["forget"], "retain": self.retain[j]["retain"]}


def collator(items: list[dict]) -> dict:
    """Pads each view on its own, as open-unlearning's nested-dict collator does."""
    return {view: collate([it[view] for it in items], PAD_ID) for view in ("forget", "retain")}


class NPOTrainer(Trainer):
    """NPO with a GD retain term in open-unlearning's shape (GradDiff -> NPO): the reference model
    is held by the trainer, compute_loss gets {"forget": ..., "retain": ...}."""

    def __init__(self, *args, ref_model: torch.nn.Module, tokens: list, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.ref_model, self.tokens = ref_model, tokens

    def compute_batch_nll(self, model, inputs: dict) -> torch.Tensor:
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        return sequence_nll(outputs.logits, inputs["labels"])

    def compute_retain_loss(self, model, retain: dict) -> torch.Tensor:
        return model(**retain).loss  # HF's mean token cross-entropy on the answer tokens

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        forget, retain = inputs["forget"], inputs["retain"]
        self.tokens.append(forget["attention_mask"].sum() + retain["attention_mask"].sum())
        with torch.no_grad():
            ref_nll = self.compute_batch_nll(self.ref_model, forget)
        forget_loss = npo_loss(-self.compute_batch_nll(model, forget), -ref_nll, BETA)
        loss = GAMMA * forget_loss + ALPHA * self.compute_retain_loss(model, retain)
        return (loss, None) if return_outputs else loss


def counted_npo(tokens: list):
    """npo.loss that also records the real tokens it read (a device tensor: no sync)."""

    def loss(batch: dict, model, ref_model, hp):
        tokens.append(
            batch["forget"]["attention_mask"].sum() + batch["retain"]["attention_mask"].sum()
        )
        return npo.loss(batch, model, ref_model, hp)

    return loss


def ours(model, ref, forget, retain, args) -> tuple[float, int]:
    tokens: list = []
    method = dataclasses.replace(METHODS["npo"], loss=counted_npo(tokens))
    cfg = TrainConfig(
        lr=1e-5,
        epochs=1,
        batch_size=args.batch_size,
        grad_accum=args.grad_accum,
        warmup_epochs=0,
        precision=args.precision,
    )
    sync(model.device)
    start = time.perf_counter()
    res = unlearn(model, method, npo.Hparams(), cfg, forget, retain, PAD_ID, ref_model=ref)
    sync(model.device)
    wall = time.perf_counter() - start
    assert res.optimizer_steps == args.steps, res.optimizer_steps
    return wall, int(torch.stack(tokens).sum())


def theirs(model, ref, forget, retain, args) -> tuple[float, int]:
    tokens: list = []
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out,
            per_device_train_batch_size=args.batch_size,
            gradient_accumulation_steps=args.grad_accum,
            num_train_epochs=1,
            learning_rate=1e-5,
            weight_decay=0.01,
            lr_scheduler_type="linear",
            max_grad_norm=1.0,
            optim="adamw_torch",
            bf16=args.precision != "fp32",
            logging_steps=5,  # open-unlearning's
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            remove_unused_columns=False,
            dataloader_num_workers=0,
            use_cpu=args.device == "cpu",
            seed=0,
        )
        sync(model.device)
        start = time.perf_counter()
        trainer = NPOTrainer(
            model=model,
            args=targs,
            train_dataset=ForgetRetain(forget, retain),
            data_collator=collator,
            ref_model=ref,
            tokens=tokens,
        )
        out_ = trainer.train()
        sync(model.device)
        wall = time.perf_counter() - start
    assert out_.global_step == args.steps, out_.global_step
    return wall, int(torch.stack(tokens).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--size", default="20m", choices=list(SIZES))
    ap.add_argument("--steps", type=int, default=40, help="optimizer steps per trial")
    ap.add_argument("--repeats", type=int, default=2, help="timed trials per side, alternating")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--grad-accum", type=int, default=1)
    ap.add_argument("--prompt-len", type=int, default=8, help="mean prompt tokens")
    ap.add_argument("--answer-len", type=int, default=16, help="mean answer tokens")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16-mixed", "bf16"))
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    n_forget = args.steps * args.batch_size * args.grad_accum
    spec = TrialSpec(args.size, 0, 1, n_forget, n_forget, args.prompt_len, args.answer_len)
    base, n_params, attn = build_model(spec, device)  # bf16 on a bf16 GPU, fp32 on CPU
    weights = torch.bfloat16 if args.precision == "bf16" else torch.float32
    base = base.to(weights)
    ref = frozen_reference(base)
    vocab = SIZES[args.size]["vocab_size"]
    forget = synthetic_rows(n_forget, "forget", spec, vocab, seed=1)
    retain = synthetic_rows(n_forget, "retain", spec, vocab, seed=2)
    warm = argparse.Namespace(**(vars(args) | {"steps": 2}))
    ours(copy.deepcopy(base), ref, forget[: 2 * args.batch_size * args.grad_accum], retain, warm)
    theirs(copy.deepcopy(base), ref, forget[: 2 * args.batch_size * args.grad_accum], retain, warm)
    times: dict[str, list[tuple[float, int]]] = {"ours": [], "hf": []}
    for _ in range(args.repeats):  # alternating, each from the same initial weights
        times["ours"].append(ours(copy.deepcopy(base), ref, forget, retain, args))
        times["hf"].append(theirs(copy.deepcopy(base), ref, forget, retain, args))
    print(
        f"{args.size} ({n_params / 1e6:.1f}M parameters, {attn}) on {device}, {args.precision}, "
        f"NPO+GD, {args.steps} steps of {args.batch_size}x{args.grad_accum}, "
        f"{args.repeats} trials per side"
    )
    rate = {}
    for side, runs in times.items():
        walls = [w for w, _ in runs]
        rate[side] = statistics.median(t / w for w, t in runs)
        print(
            f"{side:>4}: wall {statistics.median(walls):.2f} s (all {walls}), "
            f"{rate[side]:.0f} tokens/s"
        )
    wall_ratio = statistics.median(w for w, _ in times["ours"]) / statistics.median(
        w for w, _ in times["hf"]
    )
    print(
        f"ours / HF Trainer: wall time {wall_ratio:.3f}x, tokens/s {rate['ours'] / rate['hf']:.3f}x"
    )
    print(f"target ours <= 0.6x HF's wall time: {'met' if wall_ratio <= 0.6 else 'missed'}")


if __name__ == "__main__":
    main()
