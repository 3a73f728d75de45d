"""The built-in benchmarks ship with the package: the manifest matches the generator and every
file's sha256, loading opens only shipped files and trains nothing, `prepare` prints the hashes,
and a damaged file, an unknown variant or an unwritable rebuild cache are one line, exit 2."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from unlearn_core import builtin, shipped
from unlearn_core.errors import UserError
from unlearn_sweep.cli import main


@pytest.mark.parametrize("name", list(builtin.VARIANTS))
def test_shipped_variant_is_what_the_generator_makes(name):
    """A generator or recipe change without re-shipping fails here (the key), and the shipped
    data equal the generated rows (pure Python: the same on every machine)."""
    assert shipped.entry(name)["key"] == builtin.build_key(name)
    generated = json.loads(builtin._generated(name))
    folder = builtin.data_dir(name)
    for config, rows in generated.items():
        if isinstance(rows, list):
            assert json.loads((folder / f"{config}.json").read_text()) == rows
        else:
            for split, split_rows in rows.items():
                assert json.loads((folder / config / f"{split}.json").read_text()) == split_rows
    models = builtin.model_dirs(name, builtin.train_splits(name))
    assert all((p / "model.safetensors").is_file() for p in models.values())


def test_shipped_files_are_small():
    total = sum(size for name in builtin.VARIANTS for _, _, size in shipped.files(name))
    assert total <= 25 * 2**20, f"{total / 2**20:.1f} MiB shipped"


_opened: list[str] | None = None


def _audit(event: str, args: tuple) -> None:
    if _opened is not None and event == "open" and isinstance(args[0], str | Path):
        _opened.append(str(Path(args[0]).resolve()))


sys.addaudithook(_audit)  # a hook cannot be removed: it records only while _opened is a list


def test_loading_opens_only_shipped_files_and_trains_nothing(tmp_path, monkeypatch):
    global _opened
    from unlearn_core.benchmarks import eval_data, resolve
    from unlearn_core.evaluate import EvalConfig
    from unlearn_core.job import get_reference
    from unlearn_core.models import ModelConfig, load_model, load_tokenizer

    cache = tmp_path / "cache"
    monkeypatch.setenv("UNLEARN_SWEEP_CACHE", str(cache))

    def no_training(*args, **kwargs):
        raise AssertionError("loading a built-in benchmark trained a model")

    monkeypatch.setattr(builtin, "train_tiny_model", no_training)
    monkeypatch.setattr(builtin, "_atomic_build", no_training)
    _opened = []
    try:
        setup = resolve("tiny-tofu-small", "forget10")
        tok = load_tokenizer(setup.target_model)
        data = eval_data(setup)
        reference = get_reference(setup, tok, EvalConfig(), torch.device("cpu"), data)
        load_model(ModelConfig(setup.target_model), torch.device("cpu"))
        opened = _opened
    finally:
        _opened = None
    assert len(reference.forget_truth_ratio) == 80
    root = str(shipped.ROOT / "tiny-tofu-small")
    benchmark_files = [p for p in opened if "tiny-tofu-small" in p or p.startswith(str(cache))]
    assert benchmark_files and all(p.startswith(root) for p in benchmark_files), benchmark_files
    assert any(p.endswith("reference/forget10.json") for p in benchmark_files)
    assert not cache.exists()  # nothing written anywhere: no build, no computed reference


@pytest.fixture
def shipped_copy(tmp_path, monkeypatch):
    """A copy of the shipped tiny-tofu-small that a test may damage."""
    root = tmp_path / "builtin_data"
    shutil.copytree(shipped.ROOT / "tiny-tofu-small", root / "tiny-tofu-small")
    shutil.copy(shipped.MANIFEST, root / "MANIFEST.json")
    monkeypatch.setattr(shipped, "ROOT", root)
    monkeypatch.setattr(shipped, "MANIFEST", root / "MANIFEST.json")
    shipped.manifest.cache_clear()
    shipped.verified.cache_clear()
    yield root / "tiny-tofu-small"
    shipped.manifest.cache_clear()
    shipped.verified.cache_clear()


def _one_line_exit_2(capsys, *argv: str) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_prepare_prints_the_sha256_of_every_shipped_file(capsys, shipped_copy):
    assert main(["prepare", "tiny-tofu-small"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(shipped.entry("tiny-tofu-small")["files"])
    for line in lines:
        sha, rel = line.split("  ")
        data = (shipped.ROOT / rel).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha


@pytest.mark.parametrize("damage", ["missing", "truncated", "changed"])
def test_damaged_shipped_file_is_one_line(capsys, shipped_copy, damage):
    path = shipped_copy / "target" / "model.safetensors"
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    else:
        data = bytearray(path.read_bytes())
        data[-1] ^= 1
        path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="target/model.safetensors is (missing|truncated)"):
        builtin.model_dir("tiny-tofu-small", "full")
    shipped.verified.cache_clear()
    err = _one_line_exit_2(capsys, "prepare", "tiny-tofu-small")
    assert "model.safetensors" in err


def test_prepare_bad_inputs(capsys, tmp_path, monkeypatch):
    err = _one_line_exit_2(capsys, "prepare", "tiny-nope")
    assert "unknown built-in benchmark 'tiny-nope'" in err and "tiny-tofu-small" in err
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("UNLEARN_SWEEP_CACHE", str(blocker / "cache"))
    err = _one_line_exit_2(capsys, "prepare", "tiny-tofu-small", "--rebuild")
    assert "cannot write the rebuilt copy" in err and "UNLEARN_SWEEP_CACHE" in err
    monkeypatch.setenv("UNLEARN_SWEEP_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("UNLEARN_SWEEP_BUILTIN", "rebuilt")
    err = _one_line_exit_2(capsys, "unlearn", "--method", "npo", "--benchmark", "tiny-tofu-small")
    assert "prepare tiny-tofu-small --rebuild" in err
    monkeypatch.setenv("UNLEARN_SWEEP_BUILTIN", "mine")
    err = _one_line_exit_2(capsys, "unlearn", "--method", "npo", "--benchmark", "tiny-tofu-small")
    assert "accepted: shipped, rebuilt" in err
    assert not (tmp_path / "empty").exists()
