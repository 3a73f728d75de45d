"""Fault injection for the soak and the fault-tolerance tests, switched on only by the environment
variable UNLEARN_SWEEP_FAULTS (never by a flag or a config file).

Spec: comma-separated `KIND@N` (the N-th trial to start, counting from 0, gets that fault) or
`KIND=RATE` (each trial independently, drawn from a hash of `seed` and its start index), with
KIND one of `kill` (SIGKILL of the worker mid-epoch), `raise` (an exception mid-epoch) and `nan`
(a NaN loss mid-epoch), and an optional `seed=S`. Example: `kill@2,nan@1` or
`kill=0.1,raise=0.1,nan=0.1,seed=3`.

A fault fires once per trial: after the trial's first reported epoch (so a checkpoint exists),
at the next loss computation. A marker in the experiment's `faults/` folder keeps a retried
trial from firing again, so a killed trial is retried from its checkpoint and finishes. That
folder is the one thing a trial opens in the experiment, and only with the switch on: injected
faults need the trials to see the experiment folder (one machine, or a shared disk); a sweep
without them never opens it from a trial (tests/test_cluster.py)."""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import os
import signal
import time
from pathlib import Path

import torch

from unlearn_core.errors import UserError

ENV = "UNLEARN_SWEEP_FAULTS"
KINDS = ("kill", "raise", "nan")


def parse(spec: str) -> tuple[dict[int, str], dict[str, float], int]:
    """-> (fault by start index, rate by kind, seed)."""
    at: dict[int, str] = {}
    rates: dict[str, float] = {}
    seed = 0
    for part in filter(None, (p.strip() for p in spec.split(","))):
        kind, sep_at, index = part.partition("@")
        if sep_at and kind in KINDS and index.isdigit():
            at[int(index)] = kind
            continue
        key, sep_eq, value = part.partition("=")
        try:
            if sep_eq and key == "seed":
                seed = int(value)
                continue
            if sep_eq and key in KINDS:
                rates[key] = float(value)
                continue
        except ValueError:
            pass
        raise UserError(
            f"{ENV}: cannot read {part!r}; accepted: KIND@N, KIND=RATE or seed=S "
            f"with KIND one of {', '.join(KINDS)}"
        )
    return at, rates, seed


def choose(spec: str, index: int) -> str | None:
    """The fault (if any) for the index-th trial to start."""
    at, rates, seed = parse(spec)
    if index in at:
        return at[index]
    digest = hashlib.sha256(f"{seed}:{index}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    for kind in KINDS:
        rate = rates.get(kind, 0.0)
        if u < rate:
            return kind
        u -= rate
    return None


def _start_index(folder: Path, trial_id: str) -> int:
    """A per-trial index in start order, kept across retries."""
    mine = folder / f"{trial_id}.index"
    if mine.is_file():
        return int(mine.read_text())
    counter = folder / "counter"
    with open(counter, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        index = int(f.read() or 0)
        f.seek(0)
        f.truncate()
        f.write(str(index + 1))
    mine.write_text(str(index))
    return index


@dataclasses.dataclass
class Armed:
    """Set `ready` once the trial may fault (after its first report); fires on the next loss,
    which reaches it through the loop's loss hook (`on_loss`, unlearn_core.train.LossHook)."""

    kind: str | None
    marker: Path
    ready: bool = False
    not_before: float = 0.0  # time.monotonic() from which it may fire (arm_after)

    def arm_after(self, seconds: float) -> None:
        """Ready, firing no sooner than `seconds` from now."""
        self.ready, self.not_before = True, time.monotonic() + seconds

    def on_loss(self, loss: torch.Tensor) -> torch.Tensor:
        if not self.ready or self.kind is None or self.marker.exists():
            return loss
        if time.monotonic() < self.not_before:
            return loss
        self.marker.write_text(self.kind)
        if self.kind == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if self.kind == "raise":
            raise RuntimeError("injected fault (UNLEARN_SWEEP_FAULTS)")
        return loss * torch.tensor(float("nan"))  # nan: the loop's divergence check sees it


def armed(folder: Path, trial_id: str | None) -> Armed | None:
    """This trial's fault, if the switch is on (None: off). `folder` keeps the start order and
    which trials already faulted (the experiment's)."""
    spec = os.environ.get(ENV, "")
    if not spec or trial_id is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f"{trial_id}.fired"
    kind = None if marker.exists() else choose(spec, _start_index(folder, trial_id))
    return Armed(kind, marker)
