"""`unlearn-sweep plan`: parameter counts from a config alone, the estimate against the measured
peak of a real training step on CPU, the refusal line and bad inputs through the CLI, and the
ordering FSDP < DDP, LoRA < full."""

from __future__ import annotations

import dataclasses
import json
import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from unlearn_core.methods import npo
from unlearn_core.models import frozen_reference
from unlearn_core.plan import GIB, PlanInputs, estimate, model_shape, read_config
from unlearn_sweep.cli import main

LLAMA_8B = dict(
    hidden_size=4096,
    num_hidden_layers=32,
    intermediate_size=14336,
    num_attention_heads=32,
    num_key_value_heads=8,
    vocab_size=128256,
    tie_word_embeddings=False,
)
LLAMA_1B = dict(
    hidden_size=2048,
    num_hidden_layers=16,
    intermediate_size=8192,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=64,
    vocab_size=128256,
    tie_word_embeddings=True,
)


def write_config(folder, **dims) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", **dims}))
    return str(folder)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    root = tmp_path_factory.mktemp("configs")
    return {
        name: model_shape(read_config(write_config(root / name, **dims)))
        for name, dims in (("8b", LLAMA_8B), ("1b", LLAMA_1B))
    }


def test_parameter_counts_from_the_config_alone(shapes):
    s8, s1 = shapes["8b"], shapes["1b"]
    # exact: embeddings + layers (attention with GQA, SwiGLU MLP, two norms) + final norm (+ head)
    layer8 = 2 * 4096 * 4096 + 2 * 4096 * 1024 + 3 * 4096 * 14336 + 2 * 4096
    assert s8.n_params == 2 * 128256 * 4096 + 32 * layer8 + 4096 == 8_030_261_248
    layer1 = 2 * 2048 * 2048 + 2 * 2048 * 512 + 3 * 2048 * 8192 + 2 * 2048
    assert s1.n_params == 128256 * 2048 + 16 * layer1 + 2048 == 1_235_814_400  # tied: one copy
    assert s8.layer_params == layer8 and s1.kv_heads * s1.head_dim == 512
    # LoRA's A (r x in) and B (out x r) on q,k,v,o,gate,up,down of every layer
    assert s1.lora_per_rank == 16 * (2 * (2048 + 2048) + 2 * (2048 + 512) + 3 * (2048 + 8192))


def test_config_json_file_works_as_its_folder(tmp_path):
    folder = write_config(tmp_path / "m", **LLAMA_1B)
    assert model_shape(read_config(f"{folder}/config.json")) == model_shape(read_config(folder))


class LiveBytes(TorchDispatchMode):
    """Bytes of CPU tensor storage alive, and their peak. Every op's outputs are seen here; each
    new storage is counted once (by address) and uncounted by a finalizer when torch frees it
    (storages keep their Python object, so the finalizer fires on the real free). Deterministic,
    unlike RSS, which the allocator's caching and other processes blur."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.now = self.peak = 0

    def track(self, t: torch.Tensor) -> None:
        s = t.untyped_storage()
        if s.data_ptr() in self.live or s.nbytes() == 0:
            return
        self.live[s.data_ptr()] = s.nbytes()
        self.now += s.nbytes()
        self.peak = max(self.peak, self.now)
        weakref.finalize(s, self._free, s.data_ptr())

    def _free(self, key: int) -> None:
        self.now -= self.live.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor) and t.device.type == "cpu":
                self.track(t)
        return out


@pytest.mark.parametrize("precision", ["fp32", "bf16-mixed"])
def test_estimate_within_25_percent_of_a_measured_step(precision):
    """NPO+GD (reference model, forget and retain forwards) on a random 21M Llama: the peak live
    bytes of the second step (AdamW's state exists by then: the steady state), with the fused
    AdamW a GPU uses (no per-parameter temporaries), against plan's total. bf16-mixed as on a
    GPU: loaded in bf16 (the reference stays so), fp32 masters, bf16 autocast for the forwards."""
    from transformers import AutoModelForCausalLM, LlamaConfig

    dims = dict(LLAMA_8B, hidden_size=512, num_hidden_layers=4, intermediate_size=1376)
    cfg = LlamaConfig(**dims | dict(num_attention_heads=8, num_key_value_heads=8, vocab_size=8192))
    load = torch.float32 if precision == "fp32" else torch.bfloat16
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", dtype=load).train()
    ref = frozen_reference(model)
    model.float()  # train._cast_weights: fp32 (master) weights
    batch_size, seq_len = 2, 128
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)

    def rows(seed: int) -> dict:
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(1, 8192, (batch_size, seq_len), generator=g)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}

    mode = LiveBytes()
    with mode:
        for t in (*model.parameters(), *model.buffers(), *ref.parameters(), *ref.buffers()):
            mode.track(t)
        for step in range(2):
            mode.peak = mode.now  # the second step's peak is kept
            batch = {"forget": rows(2 * step), "retain": rows(2 * step + 1)}
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16-mixed"):
                loss, _ = npo.loss(batch, model, ref, npo.Hparams())
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    plan = PlanInputs(
        model_shape(cfg),
        reference=True,
        precision=precision,
        batch_size=batch_size,
        seq_len=seq_len,
        eval_batch_size=1,
        load_bytes=load.itemsize,
    )
    total = estimate(plan)["total"]
    error = total / mode.peak - 1
    print(f"measured peak {mode.peak / 2**20:.1f} MiB, plan {total / 2**20:.1f} MiB ({error:+.1%})")
    assert abs(error) < 0.25


def plan_args(model: str, *extra: str) -> list[str]:
    return ["plan", "--model", model, "--method", "npo", *extra]


def test_refusal_is_one_line_naming_the_largest_item_and_the_fix(tmp_path, capsys):
    model = write_config(tmp_path / "8b", **LLAMA_8B)
    small = ("--batch-size", "1", "--seq-len", "128", "--eval-batch-size", "1")
    assert main(plan_args(model, *small, "--device-memory", "80")) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert err.startswith("error: needs ") and "80.0 available" in err
    assert "the largest item is optimizer state" in err
    assert "--strategy fsdp --workers" in err and "--lora-r 16" in err
    workers = int(err.split("--workers ")[1].split()[0])
    fixed = [*small, "--strategy", "fsdp", "--workers", str(workers), "--device-memory", "80"]
    assert main(plan_args(model, *fixed)) == 0  # the suggested world fits
    assert "fits:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--strategy", "zero"), "unknown strategy 'zero'"),
        (("--strategy", "fsdp"), "give --workers 2 or more"),
        (("--workers", "0"), "--workers must be >= 1"),
    ],
)
def test_bad_flags_are_one_line(tmp_path, capsys, flags, message):
    assert main(plan_args(write_config(tmp_path / "1b", **LLAMA_1B), *flags)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_a_folder_without_config_is_one_line(tmp_path, capsys):
    (tmp_path / "weights").mkdir()
    assert main(plan_args(str(tmp_path / "weights"))) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: model path '{tmp_path / 'weights'}' has no config.json"
    )


def test_fsdp_beats_ddp_and_lora_beats_full(shapes):
    base = PlanInputs(shapes["8b"], reference=True, batch_size=8, seq_len=512)
    ddp4 = estimate(dataclasses.replace(base, workers=4))["total"]
    fsdp4 = estimate(dataclasses.replace(base, strategy="fsdp", workers=4))["total"]
    assert fsdp4 < ddp4
    assert ddp4 > estimate(base)["total"]  # DDP replicates, and adds its gradient buckets
    assert estimate(dataclasses.replace(base, lora_r=32))["total"] < estimate(base)["total"]
    lora = estimate(dataclasses.replace(base, lora_r=32))
    assert lora["reference model"] == 0 and lora["optimizer state"] < GIB  # adapters only
    ckpt = estimate(dataclasses.replace(base, gradient_checkpointing=True))
    assert ckpt["activations"] < estimate(base)["activations"] / 5


def test_the_sweep_start_check_refuses_in_sweep_flags_what_cannot_fit(tmp_path):
    """sweeps/fit.py: at sweep start each GPU trial's estimate against what a trial gets of its
    GPU. An 8B full fine-tune of NPO on 80 GiB is refused in one line naming the sweep's own
    flags; its LoRA, or FSDP over enough workers, fits; CPU trials and models without a config
    to read (a built-in benchmark's tiny target) are not checked."""
    from sweeps.config import SweepConfig
    from sweeps.fit import check_fits, plan_of
    from unlearn_core.errors import UserError
    from unlearn_core.source import Source

    model = write_config(tmp_path / "8b", **LLAMA_8B)

    def cfg(**kw) -> SweepConfig:
        lora = kw.pop("lora_r", 0)
        source = Source(benchmark="tofu", model=model, lora_r=lora)
        return SweepConfig(method="npo", source=source, **({"gpus_per_trial": 1} | kw))

    with pytest.raises(UserError) as e:
        check_fits([cfg()], device_gib=80)
    line = str(e.value)
    assert line.startswith("npo: needs ") and "\n" not in line and "80.0 available" in line
    assert "largest item is activations" in line and "--gradient-checkpointing" in line
    small = dict(batch_size=1, gradient_checkpointing=True)  # then the optimizer state is
    with pytest.raises(UserError) as e:
        check_fits([cfg(**small)], device_gib=80)
    line = str(e.value)
    assert "--strategy fsdp --gpus-per-trial 4" in line and "--lora-r 16" in line
    assert "--workers " not in line and "--seq-len" not in line  # plan's own flags
    check_fits([cfg(lora_r=16, **small)], device_gib=80)
    check_fits([cfg(gpus_per_trial=8, strategy="fsdp", **small)], device_gib=80)
    assert plan_of(cfg(gpus_per_trial=8, strategy="fsdp")).workers == 8
    assert plan_of(SweepConfig(method="npo")) is None  # tiny-tofu's built target: no config read
    check_fits([SweepConfig(method="npo", source=Source(benchmark="tofu", model=model))])
