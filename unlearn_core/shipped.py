"""The built-in benchmarks as shipped inside the package: every variant's data, tokenizer, target
and retain models and retain-model references, with each file's sha256 in one versioned manifest.
CPU float kernels differ between machines, so models trained on the user's machine would differ
too; shipping them makes tiny-tofu the same benchmark, bit for bit, everywhere."""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
from pathlib import Path

from unlearn_core.errors import UserError

ROOT = Path(__file__).resolve().parent / "builtin_data"
MANIFEST = ROOT / "MANIFEST.json"
MANIFEST_VERSION = 1


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def manifest() -> dict:
    """{"version", "variants": {name: {"key", "files": {relative path: sha256}}}}."""
    try:
        data = json.loads(MANIFEST.read_text())
    except FileNotFoundError:
        raise UserError(
            f"the shipped benchmark manifest {MANIFEST} is missing; reinstall "
            "unlearn-sweep, or use a rebuilt copy (UNLEARN_SWEEP_BUILTIN=rebuilt)"
        ) from None
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(
            f"the shipped benchmark manifest {MANIFEST} is not valid JSON ({e})"
        ) from None
    if data.get("version") != MANIFEST_VERSION:
        raise UserError(
            f"the shipped benchmark manifest {MANIFEST} has version "
            f"{data.get('version')!r}; this unlearn-sweep reads {MANIFEST_VERSION}"
        )
    return data


def entry(name: str) -> dict:
    variants = manifest()["variants"]
    if name not in variants:
        raise UserError(
            f"built-in benchmark {name!r} is not shipped; shipped: {', '.join(variants)}"
        )
    return variants[name]


@functools.cache
def verified(name: str) -> Path:
    """The variant's shipped folder once every file has its recorded sha256 (checked once per
    process: ~20 ms for a variant), else one line naming the first bad file."""
    folder = ROOT / name
    for rel, want in entry(name)["files"].items():
        path = folder / rel
        if not path.is_file():
            raise UserError(
                f"shipped benchmark file {path} is missing; reinstall unlearn-sweep "
                f"or run `unlearn-sweep prepare {name} --rebuild`"
            )
        if sha256(path) != want:
            raise UserError(
                f"shipped benchmark file {path} is truncated or changed (sha256 "
                f"differs from the manifest); reinstall unlearn-sweep"
            )
    return folder


def files(name: str) -> list[tuple[str, str, int]]:
    """(path relative to the package's builtin_data/, sha256, bytes) of every shipped file."""
    folder = verified(name)
    return [
        (f"{name}/{rel}", sha, (folder / rel).stat().st_size)
        for rel, sha in entry(name)["files"].items()
    ]


def ship(name: str, source: Path, key: str, parts: list[str]) -> None:
    """Maintainers only (tools/ship_builtin.py): copy the `parts` of a built variant folder into
    the package and record their hashes with the cache key they were built under."""
    dest = ROOT / name
    if dest.exists():
        shutil.rmtree(dest)
    for part in parts:
        shutil.copytree(source / part, dest / part)
    recorded = {str(p.relative_to(dest)): sha256(p) for p in sorted(dest.rglob("*")) if p.is_file()}
    data = (
        json.loads(MANIFEST.read_text())
        if MANIFEST.is_file()
        else {"version": MANIFEST_VERSION, "variants": {}}
    )
    data["variants"][name] = {"key": key, "files": recorded}
    data["variants"] = dict(sorted(data["variants"].items()))
    MANIFEST.write_text(json.dumps(data, indent=1) + "\n")
    manifest.cache_clear()
    verified.cache_clear()
