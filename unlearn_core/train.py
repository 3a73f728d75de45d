"""The one unlearning loop every method uses: seeded forget/retain pairing, gradient accumulation
(in this project's step accounting or open-unlearning's, unlearn_core/steps.py), AdamW with warmup
and a linear/cosine/constant schedule, divergence check, per-epoch callback."""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
from accelerate import Accelerator
from torch.nn.attention import SDPBackend, sdpa_kernel
from tqdm.auto import tqdm

from unlearn_core import distributed
from unlearn_core.config import check_fields
from unlearn_core.data.format import collate
from unlearn_core.errors import TrialDiverged, UserError
from unlearn_core.kernels import apply_liger, check_liger
from unlearn_core.methods import Method
from unlearn_core.steps import ACCOUNTINGS, decay_groups, scheduler, step_plan

SCHEDULES = ("linear", "cosine", "constant")
PRECISIONS = ("auto", "bf16-mixed", "bf16", "fp32")
SEED_MAX = 2**32 - 1  # numpy (and Optuna's samplers) take seeds in 0..2**32-1
BUCKETS = ("off", "on", "auto")
MICRO_BATCHES = ("fixed", "auto")
PAD_MULTIPLE_MAX = 4096
# bucketing sorts rows by length within chunks of this many micro-batches of the shuffled order:
# a few hundred rows at batch 8, enough for similar lengths to meet, few enough that the epoch's
# order stays random at the scale of a step (sorting the whole epoch would put every short row in
# the first steps and every long one in the last)
BUCKET_CHUNK = 32


@dataclass(frozen=True)
class TrainConfig:
    """Optimiser and schedule. Defaults follow open-unlearning's TOFU setup (effective batch 32)."""

    lr: float = 1e-5  # AdamW's peak learning rate
    epochs: int = 10  # passes over the forget set
    batch_size: int = 8  # per device
    grad_accum: int = 4  # gradient accumulation steps (effective batch = batch_size x grad_accum)
    weight_decay: float = 0.01  # AdamW's decoupled weight decay, of all but biases and norms
    warmup_epochs: float = 1.0  # linear warmup, in epochs (fractions allowed)
    schedule: str = "linear"  # learning-rate decay after warmup: linear, cosine or constant
    max_grad_norm: float = 1.0  # 0 disables clipping
    seed: int = 0  # of the model's training randomness and the data order
    # stop after this many epochs of an `epochs`-long schedule (warmup, decay and total steps
    # still follow `epochs`), to reproduce a sweep trial evaluated mid-schedule; None: all
    stop_after: int | None = None
    # how micro-batches make optimizer steps: unlearn-sweep (each epoch ends with a short step;
    # warmup from lr/(warmup+1)) or open-unlearning (HF Trainer's: a partial step carries into the
    # next epoch, the schedule has epochs x (batches // grad_accum) steps and training stops there,
    # warmup starts at LR 0)
    step_accounting: str = "unlearn-sweep"
    # weights and compute: bf16-mixed (fp32 weights and AdamW state, bf16 autocast compute), bf16
    # (weights in bf16: most updates at lr 1e-5 round away, benchmarks/RESULTS.md) or fp32; auto:
    # bf16-mixed on a GPU with bf16, fp32 elsewhere
    precision: str = "auto"
    # recompute each decoder layer's activations in the backward pass instead of keeping them
    # (Hugging Face gradient checkpointing, non-reentrant): less activation memory for one more
    # forward pass of each layer; the same loss and gradients
    gradient_checkpointing: bool = False
    # length-bucketed micro-batches (off, on, or auto: on on CUDA only, so CPU runs keep their
    # recorded bits): rows sorted by length within chunks of the epoch's shuffled order, the
    # micro-batch order then shuffled (epoch_batches), each view padded to pad_multiple
    bucket: str = "auto"
    # with bucketing, each view's padded length is rounded up to a multiple of this (1..4096), so
    # the GPU's kernels see a handful of shapes (64: at most 8 for max_length 512, and a multiple
    # of flash attention's tiles; under 64 pad tokens per row)
    pad_multiple: int = 64
    # fixed: batch_size x grad_accum as given; auto: on CUDA, the largest power-of-two micro-batch
    # dividing the effective batch whose forward+backward fits (probed), elsewhere as given; the
    # effective batch stays (token-mean losses then differ slightly: tests/test_speed.py)
    micro_batch: str = "fixed"
    compile: bool = False  # torch.compile the trained model's forward while it trains
    # liger-kernel's fused RMSNorm, RoPE and SwiGLU on the trained model (CUDA, the `liger`
    # extra; unlearn_core/kernels.py)
    liger: bool = False

    def __post_init__(self) -> None:
        check_fields(dataclasses.asdict(self), TrainConfig, "train")  # types, finite, no booleans
        if not 0 <= self.seed <= SEED_MAX:
            raise UserError(f"seed must be in 0..2**32-1 (numpy's limit), got {self.seed}")
        for name in ("lr", "epochs", "batch_size", "grad_accum"):
            if not getattr(self, name) > 0:
                raise UserError(f"{name} must be positive, got {getattr(self, name)}")
        if self.stop_after is not None and not 1 <= self.stop_after <= self.epochs:
            raise UserError(
                f"stop_after must be None or in [1, epochs={self.epochs}], got {self.stop_after}"
            )
        if self.weight_decay < 0 or self.warmup_epochs < 0 or self.max_grad_norm < 0:
            raise UserError("weight_decay, warmup_epochs and max_grad_norm must be >= 0")
        if self.schedule not in SCHEDULES:
            raise UserError(f"unknown schedule {self.schedule!r}; accepted: {', '.join(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise UserError(
                f"unknown precision {self.precision!r}; accepted: {', '.join(PRECISIONS)}"
            )
        if self.step_accounting not in ACCOUNTINGS:
            raise UserError(
                f"unknown step_accounting {self.step_accounting!r}; "
                f"accepted: {', '.join(ACCOUNTINGS)}"
            )

        for name, value, accepted in (
            ("bucket", self.bucket, BUCKETS),
            ("micro_batch", self.micro_batch, MICRO_BATCHES),
        ):
            if value not in accepted:
                raise UserError(f"unknown {name} {value!r}; accepted: {', '.join(accepted)}")
        if not 1 <= self.pad_multiple <= PAD_MULTIPLE_MAX:
            raise UserError(
                f"pad_multiple must be in 1..{PAD_MULTIPLE_MAX}, got {self.pad_multiple}"
            )

    @property
    def last_epoch(self) -> int:
        """The epoch training ends after: stop_after if set, else epochs (under open-unlearning's
        accounting the step budget may end it earlier: StepPlan.last_epoch)."""
        return self.epochs if self.stop_after is None else self.stop_after


@dataclass(frozen=True)
class TrainResult:
    """What a run did, recorded with every result so it can be reproduced and compared."""

    optimizer_steps: int
    effective_batch: int
    world_size: int
    seed: int
    epochs: int  # data epochs trained (StepPlan.last_epoch), of a schedule for TrainConfig.epochs
    wall_time_s: float
    logs: list[dict] = field(default_factory=list)  # one entry per optimizer step


@dataclass
class LoopState:
    """Everything needed to continue a run after `epoch` completed epochs (checkpoint/resume)."""

    epoch: int
    step: int
    model: dict  # trainable parameters and buffers
    optimizer: dict
    scheduler: dict
    order_gen: torch.Tensor
    pair_gen: torch.Tensor
    logs: list[dict]
    # a step still accumulating at the epoch's end (open-unlearning's accounting carries it into
    # the next epoch): its gradients by parameter name and its logged values so far; else empty
    pending_grads: dict = field(default_factory=dict)
    pending_parts: dict = field(default_factory=dict)
    # the run's last epoch (StepPlan.last_epoch, which open-unlearning's accounting may reach
    # before cfg.last_epoch): nothing is left to train
    final: bool = False


# on_epoch_end(epoch, model, state): model is what an evaluation should see (finalized copy for
# task-vector methods); state is the resumable loop state.
EpochCallback = Callable[[int, torch.nn.Module, LoopState], None]
# on_loss(loss) -> loss: sees each micro-batch's loss before the divergence check and returns the
# one to back-propagate (sweeps/faults.py injects its faults here).
LossHook = Callable[[torch.Tensor], torch.Tensor]
# on_step(log): after each optimizer step, its log (step, epoch, lr, loss and the method's parts,
# tokens), already on the host: a sweep trial reports every N steps from here
StepCallback = Callable[[dict], None]


def _model_state(model: torch.nn.Module) -> dict:
    """Trainable parameters and buffers: what training changes (frozen weights are reloaded), as
    host copies (_host_copy); a sharded (FSDP) parameter whole (every rank calls this)."""
    state = {n: distributed.full(p) for n, p in model.named_parameters() if p.requires_grad}
    return _host_copy(state | dict(model.named_buffers()))


def _host_copy(tree):
    """Tensors in nested dicts and lists copied to host memory, the rest deep-copied: an epoch's
    snapshot must not hold a second copy of the trainable weights and AdamW's two moments on the
    accelerator (3x the trainable weights for a full fine-tune). Copies from a GPU are
    non_blocking (into pinned memory) and waited for once, at the end."""
    on_gpu: list[bool] = []
    out = _host_tree(tree, on_gpu)
    if any(on_gpu):
        torch.cuda.synchronize()  # the non_blocking copies have landed before anyone reads them
    return out


def _host_tree(tree, on_gpu: list[bool]):
    if isinstance(tree, torch.Tensor):
        on_gpu.append(tree.is_cuda)
        return tree.detach().to("cpu", copy=True, non_blocking=tree.is_cuda)
    if isinstance(tree, dict):
        return {k: _host_tree(v, on_gpu) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return type(tree)(_host_tree(v, on_gpu) for v in tree)
    return copy.deepcopy(tree)


def epoch_batches(
    n_forget: int,
    n_retain: int,
    cfg: TrainConfig,
    order_gen: torch.Generator,
    pair_gen: torch.Generator,
    rank: int,
    world: int,
    lengths: Sequence[int] | None = None,
    retain_lengths: Sequence[int] | None = None,
) -> list[tuple[list[int], list[int]]]:
    """(forget indices, retain indices) per micro-batch. The forget order comes from a stream shared
    by all ranks (so their shards are disjoint); retain partners come from this rank's own stream
    (open-unlearning #139: every rank drew the same retain rows). With `lengths` (each forget
    row's, row_lengths) each rank's micro-batches are grouped by length (_bucketed), and with
    `retain_lengths` too the epoch's retain draws (the same draws) are regrouped likewise."""
    order = torch.randperm(n_forget, generator=order_gen)[: n_forget - n_forget % world]
    shard = order[rank::world].tolist()
    groups = [shard[i : i + cfg.batch_size] for i in range(0, len(shard), cfg.batch_size)]
    if lengths is not None:
        groups = _bucketed(shard, lengths, cfg.batch_size, order_gen)
    partners = [
        torch.randint(n_retain, (len(forget_idx),), generator=pair_gen).tolist() if n_retain else []
        for forget_idx in groups
    ]
    if lengths is not None and retain_lengths is not None and n_retain:
        # partners were random draws: which micro-batch gets which draw is free to choose, so
        # group them by length as well (else every retain view pads to its random longest)
        drawn = _length_sorted([i for p in partners for i in p], retain_lengths, cfg.batch_size)
        cuts = [0]
        for p in partners:
            cuts.append(cuts[-1] + len(p))
        partners = [drawn[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]
    return list(zip(groups, partners, strict=True))


def _length_sorted(rows: list[int], lengths: Sequence[int], batch_size: int) -> list[int]:
    """`rows` sorted by length (stable) within chunks of BUCKET_CHUNK micro-batches."""
    chunk = BUCKET_CHUNK * batch_size
    return [
        i
        for c in range(0, len(rows), chunk)
        for i in sorted(rows[c : c + chunk], key=lengths.__getitem__)
    ]


def _bucketed(
    shard: list[int], lengths: Sequence[int], batch_size: int, order_gen: torch.Generator
) -> list[list[int]]:
    """The shard's micro-batches of similar length: rows sorted by length (stable) within chunks
    of BUCKET_CHUNK micro-batches of the shuffled order, cut into micro-batches, the full ones
    shuffled with the shared order stream (every rank has as many, so the stream stays in step
    across ranks) and the short one, if any, kept last as without bucketing. Each row is still in
    exactly one micro-batch; the number of micro-batches (StepPlan's) is unchanged."""
    rows = _length_sorted(shard, lengths, batch_size)
    groups = [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    full = [g for g in groups if len(g) == batch_size]
    short = [g for g in groups if len(g) < batch_size]
    return [full[k] for k in torch.randperm(len(full), generator=order_gen).tolist()] + short


def row_lengths(rows: Sequence[dict]) -> list[int]:
    """Each row's longest view in tokens (each view is padded on its own): the bucketing key."""
    return [max(len(enc["input_ids"]) for enc in row.values()) for row in rows]


def _tokens(rows: Sequence[dict], idx: list[int]) -> int:
    """Unpadded tokens of these rows, summed over their views (forget, forget_idk, ...)."""
    return sum(len(rows[i][k]["input_ids"]) for i in idx for k in rows[i])


def make_batch(
    forget: Sequence[dict],
    retain: Sequence[dict],
    f_idx: list[int],
    r_idx: list[int],
    pad_id: int,
    device: torch.device,
    step: int,
    pad_multiple: int = 1,
) -> dict:
    """Collate every view of the forget rows (forget, forget_idk, ...) and of their retain partners
    (retain, retain_idk), each padded to a multiple of `pad_multiple` tokens; `step` is the
    optimizer step, for methods that alternate phases."""
    views = {k: [forget[i][k] for i in f_idx] for k in forget[f_idx[0]]}
    if retain:
        views |= {k: [retain[i][k] for i in r_idx] for k in retain[0]}
    batch: dict = {
        k: {n: t.to(device) for n, t in collate(v, pad_id, multiple=pad_multiple).items()}
        for k, v in views.items()
    }
    batch["step"] = step
    return batch


def _restore(
    resume: LoopState,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    order_gen: torch.Generator,
    pair_gen: torch.Generator,
) -> tuple[int, int, list[dict], dict[str, torch.Tensor | float]]:
    """Load an interrupted run's weights, optimizer, schedule, RNG streams and the gradients of a
    step still accumulating; returns its (step, epochs done, logs, that step's logged values).
    Called after the scheduler exists: its constructor resets the optimizer's lr, which the
    loaded optimizer and scheduler states then overwrite. The snapshot lives in host memory:
    copy_ and load_state_dict (which casts and moves each state to its parameter's dtype and
    device) put it back where the parameters are; the deepcopy keeps a CPU optimizer from
    aliasing, and then updating, the snapshot's tensors."""
    _load_model_state(model, resume.model)
    distributed.load_optimizer_state(model, opt, copy.deepcopy(resume.optimizer))
    sched.load_state_dict(copy.deepcopy(resume.scheduler))
    order_gen.set_state(resume.order_gen.clone())
    pair_gen.set_state(resume.pair_gen.clone())
    params = dict(model.named_parameters())
    for name, grad in resume.pending_grads.items():
        params[name].grad = distributed.like(params[name], grad.clone().to(params[name].device))
    return resume.step, resume.epoch, list(resume.logs), dict(resume.pending_parts)


def _load_model_state(model: torch.nn.Module, saved: dict) -> None:
    """Put back every saved parameter and buffer by name. load_state_dict would skip the
    non-persistent buffers in which methods keep their state (PDU's dual variable, TAU's theta_sga
    snapshot), so a resumed trial would silently restart them."""
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())
    unknown = sorted(set(saved) - set(params) - set(buffers))
    if unknown:
        raise ValueError(f"the checkpoint holds {', '.join(unknown[:3])}, which this model lacks")
    with torch.no_grad():
        for name, value in saved.items():
            if name in params:  # a sharded parameter takes its shard of the whole value
                params[name].copy_(distributed.like(params[name], value))
            elif buffers[name].shape == value.shape:
                buffers[name].copy_(value)
            else:  # a buffer whose size the method sets as it runs (GRUN's anchor positions)
                owner, _, leaf = name.rpartition(".")
                setattr(model.get_submodule(owner), leaf, value.clone().to(buffers[name].device))


def _snapshot(
    epoch: int,
    step: int,
    model: torch.nn.Module,
    opt: torch.optim.Optimizer,
    sched: torch.optim.lr_scheduler.LRScheduler,
    order_gen: torch.Generator,
    pair_gen: torch.Generator,
    logs: list[dict],
    parts: dict[str, torch.Tensor | float],
    final: bool,
) -> LoopState:
    """What resuming after `epoch` needs (copies in host memory: training goes on); _restore
    loads it back onto the parameters' devices."""
    return LoopState(
        epoch,
        step,
        _model_state(model),
        _host_copy(distributed.optimizer_state(model, opt)),
        copy.deepcopy(sched.state_dict()),
        order_gen.get_state(),
        pair_gen.get_state(),
        list(logs),
        _host_copy(
            {n: distributed.full(p.grad) for n, p in model.named_parameters() if p.grad is not None}
        ),
        dict(parts),
        final,
    )


def unlearn(
    model: torch.nn.Module,
    method: Method,
    hp: object,
    cfg: TrainConfig,
    forget: Sequence[dict],
    retain: Sequence[dict],
    pad_id: int,
    ref_model: torch.nn.Module | None = None,
    on_epoch_end: EpochCallback | None = None,
    accelerator: Accelerator | None = None,
    progress: bool = False,
    resume: LoopState | None = None,
    on_loss: LossHook | None = None,
    on_step: StepCallback | None = None,
    strategy: str = "ddp",
) -> TrainResult:
    """Run `method` on (forget, retain) for the data epochs of a cfg.epochs schedule that
    step_plan says (cfg.last_epoch, or fewer under open-unlearning's accounting); raises
    TrialDiverged on a non-finite loss.

    forget: encoded examples, each a dict of named encodings ({"forget": {...}, ...});
    retain: encoded examples of the retain set ({"retain": {...}, ...}); empty if unused.
    resume: continue after resume.epoch epochs (weights, optimizer, schedule, RNG streams).
    strategy: with several processes, ddp (accelerate's DistributedDataParallel) or fsdp (torch
    FSDP2: parameters, gradients and AdamW state sharded; snapshots hold them whole).
    """
    acc = accelerator or Accelerator(gradient_accumulation_steps=1)
    world, rank = acc.num_processes, acc.process_index
    precision = resolve_precision(cfg.precision, acc.device)
    _cast_weights(model, precision)  # before prepare: a method's own modules keep their dtype
    if cfg.gradient_checkpointing:
        _checkpointing(model)
    if cfg.liger:
        check_liger(True, acc.device)
        apply_liger(model)
    if method.prepare is not None:
        model = method.prepare(model, hp)
    compute = functools.partial(_compute, precision, acc.device)
    if cfg.micro_batch == "auto" and acc.device.type == "cuda":
        fits = functools.partial(
            _fits, acc, model.to(acc.device), method, hp, ref_model, forget, retain, pad_id, compute
        )
        cfg = fit_micro_batch(cfg, fits, acc)
    if strategy == "fsdp":  # before the optimizer: sharding replaces the parameters
        model = distributed.shard(model.to(acc.device))
    plan = step_plan(len(forget), cfg, world)
    bucket = resolve_bucket(cfg.bucket, acc.device)
    lengths = row_lengths(forget) if bucket else None
    retain_lengths = row_lengths(retain) if bucket else None
    pad_multiple = cfg.pad_multiple if lengths is not None else 1
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _optimizer(method, hp, cfg, model)
    sched = scheduler(opt, cfg, plan)  # sized for all cfg.epochs, even with stop_after
    order_gen = torch.Generator().manual_seed(cfg.seed)  # identical on every rank
    pair_gen = torch.Generator().manual_seed(cfg.seed * 100_003 + 1 + rank)  # one per rank
    step, first_epoch, logs, parts = 0, 0, [], {}
    if resume is not None:
        step, first_epoch, logs, parts = _restore(resume, model, opt, sched, order_gen, pair_gen)
    if strategy == "ddp":  # FSDP2 syncs its own gradients (a DDP wrapper on it would again)
        model, opt = acc.prepare(model, opt)
    start = time.perf_counter()
    bar = tqdm(
        total=plan.run_steps,
        initial=step,
        desc="unlearn",
        disable=not progress or not acc.is_main_process,
    )
    for epoch in range(first_epoch, plan.last_epoch):
        model.train()
        micro = epoch_batches(
            len(forget), len(retain), cfg, order_gen, pair_gen, rank, world, lengths, retain_lengths
        )
        # compiled only while training: the epoch's callback evaluates (and task vectors copy)
        # the plain module
        with _compiled(acc.unwrap_model(model), cfg.compile):
            # the plan stops open-unlearning's run at its last step, possibly mid-epoch: the
            # callback below then fires for that cut epoch, where training stops (as HF's does)
            for i, (f, r) in enumerate(micro[: plan.micro_in(epoch)]):
                size, steps_now = plan.group(epoch * plan.micro_per_epoch + i)
                batch = make_batch(forget, retain, f, r, pad_id, acc.device, step, pad_multiple)
                # unpadded input tokens of every view, counted on the host (for tokens/s); in
                # `parts`, so a step still accumulating when a checkpoint is taken keeps its count
                parts["tokens"] = parts.get("tokens", 0) + _tokens(forget, f) + _tokens(retain, r)
                logged = _backward(
                    acc,
                    model,
                    method,
                    hp,
                    ref_model,
                    batch,
                    plan.divisor(size),
                    steps_now,
                    on_loss,
                    compute,
                )
                for k, v in logged.items():  # the step's logs: means over its micro-batches, kept
                    parts[k] = parts.get(k, 0.0) + v / size  # on the device (no host sync here)
                if steps_now:
                    if world > 1:  # every rank logs, and checks, the same mean loss
                        parts["loss"] = distributed.mean_over_ranks(parts["loss"])
                    values = _to_host(parts)  # the step's one device-to-host transfer
                    if not math.isfinite(values["loss"]):  # before the step: weights stay finite
                        raise TrialDiverged(step, values["loss"])
                    _update(acc, params, opt, sched, cfg.max_grad_norm)
                    step += 1
                    bar.update(1)
                    bar.set_postfix(loss=f"{values['loss']:.4f}")
                    logs.append(
                        {"step": step, "epoch": epoch + 1, "lr": sched.get_last_lr()[0], **values}
                    )
                    parts = {}
                    if on_step is not None:
                        on_step(logs[-1])
        if on_epoch_end is not None:
            model.eval()
            plain = acc.unwrap_model(model)
            final = epoch + 1 == plan.last_epoch
            state = _snapshot(
                epoch + 1, step, plain, opt, sched, order_gen, pair_gen, logs, parts, final
            )
            on_epoch_end(epoch + 1, _finalized(plain, method, hp, ref_model), state)
    bar.close()
    opt.zero_grad(set_to_none=True)  # a step left accumulating by stop_after is never taken
    model.eval()
    if method.finalize is not None:
        method.finalize(acc.unwrap_model(model), ref_model, hp)
    return TrainResult(
        optimizer_steps=step,
        effective_batch=cfg.batch_size * cfg.grad_accum * world,
        world_size=world,
        seed=cfg.seed,
        epochs=plan.last_epoch,
        wall_time_s=time.perf_counter() - start,
        logs=logs,
    )


def resolve_precision(precision: str, device: torch.device) -> str:
    """TrainConfig.precision with auto resolved: bf16-mixed on a GPU that has bf16 (pure bf16
    loses most updates at these learning rates; the CPU figure in benchmarks/RESULTS.md), fp32
    elsewhere (CPU autocast is slower than fp32 on most CPUs)."""
    if precision != "auto":
        return precision
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "fp32"


def _checkpointing(model: torch.nn.Module) -> None:
    """Hugging Face gradient checkpointing on the model as loaded (a peft model passes the call to
    its base). Non-reentrant: gradients reach LoRA's adapters through frozen embeddings without
    inputs that require grad (Hugging Face sets that up too, enable_input_require_grads); it
    recomputes only in train mode with grad on (evaluations and a LoRA reference run without)."""
    try:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    except (AttributeError, ValueError) as e:  # not a Hugging Face model, or one without support
        reason = str(e).splitlines()[0] if isinstance(e, ValueError) else "no such method"
        raise UserError(
            f"gradient_checkpointing: {type(model).__name__} does not support it ({reason}); "
            "leave it off"
        ) from None


def resolve_bucket(bucket: str, device: torch.device) -> bool:
    """TrainConfig.bucket with auto resolved: on on CUDA (few shapes: fewer kernel plans and
    recompiles, less padding), off elsewhere (a CPU gains little, and the recorded CPU runs, the
    built-in benchmark's included, keep their data order bit for bit)."""
    return bucket == "on" or (bucket == "auto" and device.type == "cuda")


def fit_micro_batch(
    cfg: TrainConfig, fits: Callable[[int], bool], acc: Accelerator | None = None
) -> TrainConfig:
    """cfg with the largest power-of-two micro-batch dividing the effective batch for which
    fits(b) holds (halving from there; 1 is taken without asking), grad_accum making up the same
    effective batch; the smallest over ranks when `acc` has several."""
    effective = cfg.batch_size * cfg.grad_accum
    b = effective & -effective  # the largest power of two dividing it
    while b > 1 and not fits(b):
        b //= 2
    if acc is not None and acc.num_processes > 1:
        b = int(acc.gather(torch.tensor([b], device=acc.device)).min())
    return dataclasses.replace(cfg, batch_size=b, grad_accum=effective // b)


def _fits(
    acc: Accelerator,
    model: torch.nn.Module,
    method: Method,
    hp: object,
    ref_model: torch.nn.Module | None,
    forget: Sequence[dict],
    retain: Sequence[dict],
    pad_id: int,
    compute: Callable[[], AbstractContextManager],
    b: int,
) -> bool:
    """Whether one forward+backward of the method's loss on the b longest forget rows (and b
    longest retain rows: partners are drawn at random) fits in GPU memory; gradients are dropped
    and buffers put back after (PDU's dual variable, TAU's snapshot move in a loss). Reads no RNG
    stream of the loop, so the run's data order is unchanged."""
    f, r = _longest(forget, b), _longest(retain, b) if retain else []
    buffers = {n: t.detach().clone() for n, t in model.named_buffers()}
    try:
        batch = make_batch(forget, retain, f, r, pad_id, acc.device, 0)
        with compute():
            loss, _ = method.loss(batch, model, ref_model, hp)
        loss.backward()
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        model.zero_grad(set_to_none=True)
        _load_model_state(model, buffers)
        torch.cuda.empty_cache()


def _longest(rows: Sequence[dict], b: int) -> list[int]:
    """Indices of the b longest rows (repeated when there are fewer than b)."""
    lengths = row_lengths(rows)
    top = sorted(range(len(rows)), key=lambda i: -lengths[i])[:b]
    return (top * b)[:b]


@contextmanager
def _compiled(model: torch.nn.Module, on: bool) -> Iterator[None]:
    """With `on`, the model's forward torch.compiled (an instance attribute shadowing the class's
    forward, removed after: hooks, deepcopies and evaluation then see the plain module)."""
    if not on:
        yield
        return
    model.forward = torch.compile(model.forward)
    try:
        yield
    finally:
        del model.forward


def _cast_weights(model: torch.nn.Module, precision: str) -> None:
    """Parameters (not buffers: rotary inv_freq stays fp32) in the precision's storage dtype, in
    place. bf16-mixed keeps frozen weights as loaded (a LoRA base stays bf16, its fp32 adapters
    are the master copy); autocast computes in bf16 all the same."""
    if precision == "bf16-mixed" and not all(p.requires_grad for p in model.parameters()):
        params = [p for p in model.parameters() if p.requires_grad]
    else:
        params = list(model.parameters())
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    with torch.no_grad():
        for p in params:
            if p.is_floating_point() and p.dtype != dtype:
                p.data = p.data.to(dtype)


# sdpa's backends on CUDA, in order of preference; cuDNN's is left out: it plans each new padded
# length anew (~1 s per micro-batch before the shapes repeat, issue 16), flash and memory-efficient
# attention do not; math is the fp32 fallback
SDPA_BACKENDS = (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH)


@contextmanager
def _compute(precision: str, device: torch.device) -> Iterator[None]:
    """The forward passes' context: bf16 autocast for bf16-mixed (backward runs outside it, as
    torch's AMP recipe has it) and, on CUDA, the sdpa backends chosen explicitly."""
    with ExitStack() as stack:
        if precision == "bf16-mixed":
            stack.enter_context(torch.autocast(device_type=device.type, dtype=torch.bfloat16))
        if device.type == "cuda":
            stack.enter_context(sdpa_kernel(list(SDPA_BACKENDS), set_priority=True))
        yield


def _optimizer(
    method: Method, hp: object, cfg: TrainConfig, model: torch.nn.Module
) -> torch.optim.Optimizer:
    """The method's optimizer, AdamW unless it brings one, over the trainable parameters in two
    groups: decayed, and biases and norms undecayed (steps.decay_groups)."""
    groups = decay_groups(model, cfg.weight_decay)
    if method.optimizer is not None:
        return method.optimizer(groups, cfg, hp)
    return torch.optim.AdamW(
        groups, lr=cfg.lr, weight_decay=cfg.weight_decay, **_adamw_kernel(groups)
    )


def _adamw_kernel(groups: list[dict]) -> dict[str, bool]:
    """AdamW's implementation: fused (one kernel for all parameters) on CUDA, foreach (a few
    multi-tensor ops, not one loop per parameter) elsewhere; the same update up to rounding."""
    if all(p.device.type == "cuda" for g in groups for p in g["params"]):
        return {"fused": True}
    return {"foreach": True}


def _backward(
    acc: Accelerator,
    model,
    method: Method,
    hp,
    ref_model,
    batch: dict,
    divisor: int,
    sync: bool,
    on_loss: LossHook | None = None,
    compute: Callable[[], AbstractContextManager] = nullcontext,
) -> dict[str, torch.Tensor | float]:
    """Forward/backward of one micro-batch, its loss divided by `divisor` (StepPlan.divisor);
    returns its logged values as detached fp32 tensors on the device, never read here: a read
    (.item(), `if tensor`) waits for the GPU to finish, and ~25 of them per micro-batch kept
    an H200 idle most of the time (issue 16). Gradients sync across ranks only on a step's last
    micro-batch (`sync`). `compute` wraps the forward passes (the precision's autocast)."""
    with nullcontext() if sync else acc.no_sync(model):
        with compute():
            loss, logged = method.loss(batch, model, ref_model, hp)
        if on_loss is not None:
            loss = on_loss(loss)
        acc.backward(loss / divisor)
    values = {"loss": loss} | logged
    return {k: v.detach().float() if isinstance(v, torch.Tensor) else v for k, v in values.items()}


def _to_host(parts: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """A step's logged values as floats, in one device-to-host copy (one stacked tensor): the
    divergence check and the logs both read it."""
    keys = [k for k, v in parts.items() if isinstance(v, torch.Tensor)]
    read = dict(zip(keys, torch.stack([parts[k] for k in keys]).tolist(), strict=True))
    return {k: read[k] if k in read else float(v) for k, v in parts.items()}


def _update(acc: Accelerator, params: list, opt, sched, max_grad_norm: float) -> None:
    """One optimizer step on the accumulated gradients: clip, step, advance the schedule."""
    if max_grad_norm > 0:
        acc.clip_grad_norm_(params, max_grad_norm)
    opt.step()
    sched.step()
    opt.zero_grad(set_to_none=True)


def _finalized(model: torch.nn.Module, method: Method, hp: object, ref_model) -> torch.nn.Module:
    """The model as it would be if training stopped now (a finalized copy for task vectors)."""
    if method.finalize is None:
        return model
    done = copy.deepcopy(model)
    method.finalize(done, ref_model, hp)
    return done
