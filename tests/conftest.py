"""Shared fixtures: a tiny in-process tokenizer and Llama (seeded, no network), tiny encoded
forget/retain sets, and the small built-in benchmark cached under the repo's .cache folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("UNLEARN_SWEEP_CACHE", str(REPO / ".cache" / "unlearn-sweep"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The cores shared out among the pytest-xdist workers, for them and the CLI processes they start
# (set before torch loads): two workers of two threads each on 2 cores made every test that ran
# beside a training test about 6x slower (OpenMP threads spinning against each other).
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // _WORKERS)))

import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# Fixtures that run real Ray sweeps: every test that uses one is marked slow (`make test-slow`).
SWEEPS = ("small_sweep", "fault_sweep", "interrupted", "floor_run")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(f in getattr(item, "fixturenames", ()) for f in SWEEPS):
            item.add_marker(pytest.mark.slow)


SENTENCES = [
    ("Where was Ana Lor born?", "Ana Lor was born in Lima, Peru."),
    ("What genre does Ana Lor write?", "Ana Lor writes gothic mystery novels."),
    ("Where was Bo Kemi born?", "Bo Kemi was born in Oslo, Norway."),
    ("What genre does Bo Kemi write?", "Bo Kemi writes science fiction."),
    ("Who wrote 'The Red Tide'?", "'The Red Tide' was written by Cara Venn."),
    ("What is the capital of Zorland?", "The capital of Zorland is Pellon."),
]


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    from unlearn_core.data.format import CHAT_TEMPLATE

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<s>", "</s>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator([t for qa in SENTENCES for t in qa] + ["Question: Answer:"], trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tk, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    fast.chat_template = CHAT_TEMPLATE
    path = tmp_path_factory.mktemp("tok")
    fast.save_pretrained(path)
    return AutoTokenizer.from_pretrained(path)


def make_tiny_model(tokenizer, seed: int = 0, layers: int = 2):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    return LlamaForCausalLM(cfg)


@pytest.fixture
def tiny_model(tiny_tokenizer):
    return make_tiny_model(tiny_tokenizer)


@pytest.fixture(scope="session")
def tiny_examples(tiny_tokenizer):
    """(forget, retain) encoded examples as the loop takes them."""
    from unlearn_core.data.format import PromptFormat, encode_qa

    fmt = PromptFormat()
    enc = [encode_qa(tiny_tokenizer, q, a, fmt) for q, a in SENTENCES]
    return [{"forget": e} for e in enc[:4]], [{"retain": e} for e in enc[4:] + enc[:2]]


@pytest.fixture(scope="session")
def small_benchmark():
    """The 40-author built-in benchmark as shipped: data, target and retain90 models."""
    from unlearn_core import builtin

    name = "tiny-tofu-small"
    return {
        "data": builtin.data_dir(name),
        "target": builtin.model_dir(name, "full"),
        "retain": builtin.model_dir(name, "retain90"),
    }


SECRETS = {
    "HF_TOKEN": "hf_secret123",
    "WANDB_API_KEY": "wandb-secret-456",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-789",
    "RAY_AUTH_TOKEN": "ray-token-0123456789abcdef0123456789abcdef",  # the private cluster's
}
SMALL_SWEEP = [
    "sweep",
    "--method",
    "npo",
    "--benchmark",
    "tiny-tofu-small",
    "--split",
    "forget10",
    "--trials",
    "2",
    "--fix",
    "epochs=1",
    "--max-concurrent",
    "1",
]


def listening(pid: int) -> set[tuple[str, int, str]]:
    """(address, port, process name) of every listening socket of `pid` and its descendants
    (a sweep's driver starts Ray's GCS, raylet, agents and workers itself)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return set()
    out = set()
    for p in procs:
        try:
            out |= {
                (c.laddr.ip, c.laddr.port, p.name())
                for c in p.net_connections(kind="inet")
                if c.status == psutil.CONN_LISTEN
            }
        except psutil.Error:  # ended in the meantime
            pass
    return out


def run_watched(args: list[str], out: Path, env: dict, timeout: float = 600):
    """The CLI in a subprocess; its console and every socket its processes listened on while it
    ran (sampled each 0.5 s) -> (exit code, console text, listeners)."""
    import subprocess
    import sys
    import time

    console = out.parent / f"{out.name}.console"
    with console.open("w") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "unlearn_sweep", *args], env=env, stdout=f, stderr=f, text=True
        )
        seen: set = set()
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            seen |= listening(proc.pid)
            time.sleep(0.5)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return proc.returncode, console.read_text(), seen


@pytest.fixture(scope="session")
def small_sweep(tmp_path_factory, small_benchmark):
    """A finished 2-trial NPO sweep (epochs 1, one trial at a time, seed 0) run with secrets in
    its environment; the security tests read it (and the sockets its processes listened on,
    in `listeners.json` next to it) and the determinism test runs it again. RAY_ADDRESS names
    a cluster that is not there: a sweep without --address starts its private one all the same
    (Ray's own lookup would join it, or the last cluster started on the machine)."""
    import json

    out = tmp_path_factory.mktemp("small-sweep")
    env = {**os.environ, **SECRETS, "RAY_ADDRESS": "127.0.0.1:9"}
    args = [*SMALL_SWEEP, "--output", str(out), "--name", "exp"]
    code, console, seen = run_watched(args, out, env)
    assert code == 0, console[-3000:]
    (out / "listeners.json").write_text(json.dumps(sorted(seen)))
    return out / "exp", console
