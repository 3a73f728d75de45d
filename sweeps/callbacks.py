"""Driver-side Tune callbacks: the tidy results log the analysis reads (one JSON line per reported
epoch, plus each trial's end), and a quiet live progress display."""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import sys
import time
from pathlib import Path

from ray.tune import Callback

from sweeps.objectives import BY_KEY


class ResultsLog(Callback):
    """Appends to `<experiment>/results/<method>.jsonl`; analysis de-duplicates by
    (trial, epoch)."""

    def __init__(self, path: str, method: str) -> None:
        self.path = path
        self.method = method
        self.completed: set[str] | None = None  # read from the log once (a resume restores us)

    def _write(self, row: dict) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(row, default=_plain) + "\n")

    def _first_completion(self, trial_id: str) -> bool:
        if self.completed is None:
            lines = Path(self.path).open() if Path(self.path).is_file() else []
            self.completed = {
                json.loads(ln)["trial_id"] for ln in lines if '"event": "complete"' in ln
            }
        first = trial_id not in self.completed
        self.completed.add(trial_id)
        return first

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        keep = {k: v for k, v in result.items() if k not in ("config", "hostname", "node_ip")}
        self._write(
            {
                "event": "result",
                "trial_id": trial.trial_id,
                "method": self.method,
                "params": _params(trial.config),
                **keep,
            }
        )

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if not self._first_completion(trial.trial_id):
            return  # a resumed sweep re-reported a trial that had finished
        self._write(
            {
                "event": "complete",
                "trial_id": trial.trial_id,
                "method": self.method,
                "params": _params(trial.config),
                "time": time.time(),
            }
        )

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._write(
            {
                "event": "error",
                "trial_id": trial.trial_id,
                "method": self.method,
                "params": _params(trial.config),
                "error": _error_text(trial),
                "time": time.time(),
            }
        )

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        self._write(
            {
                "event": "retry",
                "trial_id": trial.trial_id,
                "method": self.method,
                "error": _error_text(trial),
                "time": time.time(),
            }
        )


class Progress(Callback):
    """One line per finished trial: counts and the best value of each objective so far."""

    def __init__(self, method: str, total: int, objectives: tuple[tuple[str, str], ...]) -> None:
        self.method = method
        self.total = total
        self.objectives = dict(objectives)  # reported key -> "max" | "min"
        self.last: dict[str, dict] = {}

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if all(k in result for k in self.objectives) or "failure" in result:
            self.last[trial.trial_id] = result

    def _line(self, trials, trial, what: str, ended: str) -> None:
        # Ray updates the ending trial's status after the callbacks: count it as `ended`
        status = [ended if t is trial else t.status for t in trials]
        diverged = sum(
            s == "TERMINATED" and "failure" in self.last.get(t.trial_id, {})
            for t, s in zip(trials, status, strict=True)
        )
        done = status.count("TERMINATED") - diverged
        failed = status.count("ERROR") + diverged
        running = status.count("RUNNING")
        feasible = [
            r
            for r in self.last.values()
            if "failure" not in r and r.get("utility_violation", 0) <= 0
        ]
        pick = {"max": max, "min": min}
        best = {
            k: pick[mode]((r[k] for r in feasible if k in r and math.isfinite(r[k])), default=None)
            for k, mode in self.objectives.items()
        }
        shown = ", ".join(f"best {k} {v:.3g}" for k, v in best.items() if v is not None)
        print(
            f"[{self.method}] trial {trial.trial_id} {what} | done {done}/{self.total}, "
            f"running {running}, failed {failed} | {shown} (above the utility floor)",
            file=sys.stderr,
            flush=True,
        )

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        r = self.last.get(trial.trial_id)
        if r is None:
            what = "ended without objectives"
        elif "failure" in r:
            what = f"FAILED: {r['failure']}"
        else:
            shown = ", ".join(f"{BY_KEY[k].name(2)} {r[k]:.3g}" for k in self.objectives)
            what = f"finished: {shown} (epoch {r['epoch']})"
            if r.get("utility_violation", 0) > 0:
                what += ", stopped by the utility floor"
        self._line(trials, trial, what, "TERMINATED")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._line(trials, trial, "FAILED", "ERROR")


STATE_FILES = ("experiment_state-*.json", "search_gen_state-*.json", "searcher-state-*.pkl")


def _readable(path: Path) -> bool:
    try:
        if path.name.startswith("experiment_state"):
            json.loads(path.read_text())
        else:  # the search generator's and the searcher's states are pickles
            with open(path, "rb") as f:
                pickle.load(f)
        return True
    except Exception:  # truncated or empty: a write cut off by a kill
        return False


def _state_files(folder: Path) -> list[Path]:
    return sorted(p for pattern in STATE_FILES for p in folder.glob(pattern))


class StateBackup(Callback):
    """Ray rewrites its experiment state in place, so a driver killed mid-write leaves it
    truncated (seen: an empty experiment_state JSON, after which Ray silently starts a new
    experiment). After every step that changed it, a complete and consistent copy of the three
    state files goes to `.backup/` (written aside, then swapped in); `repair_state` restores it."""

    def __init__(self, exp_dir: str) -> None:
        self.exp_dir = Path(exp_dir)
        self.seen: tuple = ()

    def on_step_end(self, iteration, trials, **info) -> None:
        files = _state_files(self.exp_dir)
        stamp = tuple((p.name, p.stat().st_mtime_ns) for p in files)
        if stamp == self.seen or not files or not all(_readable(p) for p in files):
            return
        new, cur, old = (self.exp_dir / n for n in (".backup.new", ".backup", ".backup.old"))
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir()
        for p in files:
            shutil.copyfile(p, new / p.name)
        shutil.rmtree(old, ignore_errors=True)
        if cur.exists():
            os.replace(cur, old)
        os.replace(new, cur)
        shutil.rmtree(old, ignore_errors=True)
        self.seen = stamp


def repair_state(exp_dir: Path) -> list[str]:
    """If any Ray state file is unreadable, put back the last consistent backup of all of them
    (trials started after it are unknown to Ray: the study records them as lost, and the sweep
    runs others in their place). Returns the names it replaced."""
    files = _state_files(exp_dir)
    if all(_readable(p) for p in files):
        return []
    backup = next(
        (
            b
            for b in (exp_dir / ".backup", exp_dir / ".backup.new", exp_dir / ".backup.old")
            if b.is_dir() and _state_files(b)
        ),
        None,
    )
    if backup is None:
        return []
    for p in files:
        p.unlink()
    for b in _state_files(backup):
        shutil.copyfile(b, exp_dir / b.name)
    return [p.name for p in files]


class DriverMemory(Callback):
    """After each trial ends, appends the driver's resident memory and the number of finished
    trials to `<experiment>/driver_memory.jsonl`: the soak checks the driver does not grow."""

    def __init__(self, path: str, method: str) -> None:
        self.path = path
        self.method = method

    def _write(self, trials, trial) -> None:
        import psutil  # a dependency of accelerate and peft

        finished = sum(t is trial or t.status in ("TERMINATED", "ERROR") for t in trials)
        row = {
            "method": self.method,
            "finished": finished,
            "pid": os.getpid(),
            "rss_mb": psutil.Process().memory_info().rss / 2**20,
            "time": time.time(),
        }
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self._write(trials, trial)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._write(trials, trial)


def check_checkpoints(exp_dir: Path) -> None:
    """Before a restore: the checkpoint each unfinished trial will continue from must be a
    complete torch file (zip CRCs checked), or the resume stops here with one line."""
    import zipfile

    from unlearn_core.errors import UserError

    states = sorted(exp_dir.glob("experiment_state-*.json"))
    if not states:
        return
    # Ray restores from the newest (by name: its session's start); older ones are stale
    for trial_json, meta_json in json.loads(states[-1].read_text())["trial_data"]:
        trial, meta = json.loads(trial_json), json.loads(meta_json)
        name = (meta.get("last_result") or {}).get("checkpoint_dir_name")
        if trial["status"] in ("TERMINATED", "ERROR") or not name:
            continue
        path = exp_dir / trial["relative_logdir"] / name / "state.pt"
        try:
            with zipfile.ZipFile(path) as z:
                member = z.testzip()
            why = None if member is None else f"bad CRC in {member}"
        except OSError as e:
            why = e.strerror or str(e)
        except (zipfile.BadZipFile, EOFError) as e:
            why = str(e) or type(e).__name__
        if why is not None:
            raise UserError(
                f"checkpoint {path} of unfinished trial {trial['trial_id']} is "
                f"corrupted ({why}); the finished trials stay in the study and "
                "results, start a new sweep"
            )


def _params(config: dict) -> dict:
    return {
        k: v
        for k, v in config.items()
        if k not in ("sweep", "reference", "utility_floor", "experiment")
    }


def _error_text(trial) -> str:
    path = trial.error_file
    if path and Path(path).is_file():
        lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()]
        return lines[-1][:500] if lines else "error"
    return "error"


def _plain(value):
    return (
        float(value)
        if isinstance(value, int | float) or type(value).__module__ == "numpy"
        else str(value)
    )
