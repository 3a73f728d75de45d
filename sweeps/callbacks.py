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
from sweeps.relocate import inside
from sweeps.rows import is_step_report, log_row


def _completed(path: Path) -> set[str]:
    """Trial ids with an end line in the results log. The log is read as untrusted: a line a
    killed driver cut off, or one that is not a row, names no trial (analysis/load.py counts
    them)."""
    if not path.is_file():
        return set()
    done = set()
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and row.get("event") == "complete":
                if isinstance(row.get("trial_id"), str):
                    done.add(row["trial_id"])
    return done


def _drop_cut_line(path: Path) -> None:
    """A killed driver can leave the log's last line unfinished; the next row appended to it
    would join it and be lost, so the unfinished part is cut first."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with path.open("rb+") as f:
        data = f.read()
        if not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)


class Appender(Callback):
    """A callback that appends to a file of the experiment. A write that fails in a trial hook is
    kept and raised at the end of Tune's step: Ray prints a traceback for an exception in its
    trial hooks (on_trial_complete runs inside its stop_trial), while one raised at the step's end
    leaves the sweep as a failed state save does, with the one line of sweeps/experiment.py."""

    failed: OSError | None = None
    mended = False  # the file's cut last line (a killed driver's) dropped by this driver

    def _append(self, path: Path, line: str) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not self.mended:
                _drop_cut_line(path)
                self.mended = True
            with open(path, "a") as f:
                f.write(line)
        except OSError as e:
            self.failed = self.failed or e

    def on_step_end(self, iteration, trials, **info) -> None:
        if self.failed is not None:
            failed, self.failed = self.failed, None
            raise failed


class ResultsLog(Appender):
    """Appends rows in sections (sweeps/rows.py) to `<experiment>/results/<method>.jsonl`;
    analysis de-duplicates by (trial, epoch)."""

    def __init__(self, path: str, method: str) -> None:
        self.path = path  # relative to the experiment (sweeps/relocate.py)
        self.method = method
        self.completed: set[str] | None = None  # read from the log once (a resume restores us)

    def _write(self, row: dict) -> None:
        self._append(inside(self.path), json.dumps(row, default=_plain) + "\n")

    def _first_completion(self, trial_id: str) -> bool:
        if self.completed is None:
            self.completed = _completed(inside(self.path))
        first = trial_id not in self.completed
        self.completed.add(trial_id)
        return first

    def _starts(self) -> dict[str, float]:
        """When each trial's process last started it (this driver's clock). In __dict__: a
        ResultsLog pickled before this field existed starts it empty."""
        return self.__dict__.setdefault("started", {})

    def _span(self, trial_id: str) -> dict[str, float]:
        """An end row's `started` and `time`: the trial's run since it last started (several
        studies at once overlap; sweeps/together.py)."""
        started = self._starts().pop(trial_id, None)
        return {"time": time.time()} | ({} if started is None else {"started": started})

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        self._starts()[trial.trial_id] = time.time()

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if is_step_report(result):  # Ray's own trial logs and TensorBoard keep these
            return
        self._write(log_row("result", trial.trial_id, self.method, _params(trial.config), result))

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        if not self._first_completion(trial.trial_id):
            return  # a resumed sweep re-reported a trial that had finished
        params = _params(trial.config)
        self._write(
            log_row("complete", trial.trial_id, self.method, params, **self._span(trial.trial_id))
        )

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        params, error = _params(trial.config), _error_text(trial)
        span = self._span(trial.trial_id)
        self._write(log_row("error", trial.trial_id, self.method, params, error=error, **span))

    def on_trial_recover(self, iteration, trials, trial, **info) -> None:
        error = _error_text(trial)
        self._write(
            log_row("retry", trial.trial_id, self.method, None, error=error, time=time.time())
        )


class Progress(Callback):
    """One line per evaluated epoch (the objectives and how training goes: loss, learning rate,
    tokens/s, peak memory), and one per finished trial: counts and the best value of each
    objective so far."""

    def __init__(self, method: str, total: int, objectives: tuple[tuple[str, str], ...]) -> None:
        self.method = method
        self.total = total
        self.objectives = dict(objectives)  # reported key -> "max" | "min"
        self.last: dict[str, dict] = {}

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        # Ray hands callbacks the report nested: its sections (sweeps/rows.py)
        run = result.get("run", {})
        if all(k in result.get("objectives", {}) for k in self.objectives) or "failure" in run:
            self.last[trial.trial_id] = result
        if "failure" not in run and "epoch" in run and result.get("objectives"):
            print(f"[{self.method}] trial {trial.trial_id} {_epoch_line(result)}", file=sys.stderr)

    def _line(self, trials, trial, what: str, ended: str) -> None:
        # Ray updates the ending trial's status after the callbacks: count it as `ended`
        status = [ended if t is trial else t.status for t in trials]
        diverged = sum(
            s == "TERMINATED" and "failure" in self.last.get(t.trial_id, {}).get("run", {})
            for t, s in zip(trials, status, strict=True)
        )
        done = status.count("TERMINATED") - diverged
        failed = status.count("ERROR") + diverged
        running = status.count("RUNNING")
        feasible = [
            r["objectives"]
            for r in self.last.values()
            if "failure" not in r["run"] and r["run"].get("utility_violation", 0) <= 0
        ]
        pick = {"max": max, "min": min}
        best = {
            k: pick[mode]((v[k] for v in feasible if k in v and math.isfinite(v[k])), default=None)
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
        elif "failure" in r["run"]:
            what = f"FAILED: {r['run']['failure']}"
        else:
            values, run = r["objectives"], r["run"]
            shown = ", ".join(f"{BY_KEY[k].name(2)} {values[k]:.3g}" for k in self.objectives)
            what = f"finished: {shown} (epoch {run['epoch']})"
            if run.get("utility_violation", 0) > 0:
                what += ", stopped by the utility floor"
        self._line(trials, trial, what, "TERMINATED")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self._line(trials, trial, "FAILED", "ERROR")


def _epoch_line(result: dict) -> str:
    run, values = result["run"], result["objectives"]
    shown = ", ".join(f"{BY_KEY[k].name(2)} {v:.3g}" for k, v in values.items() if k in BY_KEY)
    train = [
        f"{label} {run[k]:{fmt}}{unit}"
        for k, label, fmt, unit in (
            ("train_loss", "loss", ".4g", ""),
            ("lr", "lr", ".2e", ""),
            ("tokens_per_s", "", ".0f", " tokens/s"),
            ("peak_memory_gib", "peak", ".2f", " GiB"),
        )
        if isinstance(run.get(k), int | float) and math.isfinite(run[k])
    ]
    tail = f" | {', '.join(t.strip() for t in train)}" if train else ""
    return f"epoch {run['epoch']}: {shown}{tail}"


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
    state files goes to `.backup/` (written aside, then swapped in); `repair_state` restores it.
    Then the trials that copy records as finished keep only their last checkpoint."""

    def __init__(self, exp_dir: str) -> None:
        self.where = exp_dir  # relative to the experiment when inside it (sweeps/relocate.py)
        self.seen: tuple = ()

    def on_step_end(self, iteration, trials, **info) -> None:
        exp_dir = inside(self.where)
        files = _state_files(exp_dir)
        stamp = tuple((p.name, p.stat().st_mtime_ns) for p in files)
        if stamp == self.seen or not files or not all(_readable(p) for p in files):
            return
        new, cur, old = (exp_dir / n for n in (".backup.new", ".backup", ".backup.old"))
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir()
        for p in files:
            shutil.copyfile(p, new / p.name)
        if not all(_readable(p) for p in _state_files(new)):
            # Ray's background sync rewrote a file while it was copied: try at the next step
            shutil.rmtree(new, ignore_errors=True)
            return
        shutil.rmtree(old, ignore_errors=True)
        if cur.exists():
            os.replace(cur, old)
        os.replace(new, cur)
        shutil.rmtree(old, ignore_errors=True)
        self.seen = stamp
        prune_finished(exp_dir, cur)

    def on_experiment_end(self, trials, **info) -> None:
        # Ray's last, forced save of its state comes after the last step: back it up and prune
        # the trials it was the first to record as finished
        self.on_step_end(None, trials)


def prune_finished(exp_dir: Path, backup: Path) -> list[Path]:
    """Delete every checkpoint but the last of each trial that the backed-up Ray state records
    as finished; returns the folders deleted.

    Why not Ray's `num_to_keep=1`: Ray deletes the older checkpoint as soon as the driver takes
    the new one, before it saves its state, so a driver killed in between leaves a state naming a
    deleted checkpoint; the running trials keep `keep_checkpoints` (2) for that. A trial's older
    checkpoints are safe to delete only once no state a resume can read will ask for them, and
    the oldest such state is the backup (`repair_state` may put it back): a trial finished in
    the backup is finished in every newer state too, and Ray never restores a finished trial.
    The last checkpoint stays: it holds the final record, so if a resume ever restores the trial
    (it finished, but the state Ray restored predates that), the trainable re-reports it from
    there without training."""
    states = sorted(backup.glob("experiment_state-*.json"))
    if not states:
        return []
    deleted = []
    # Ray restores from the newest state (by name: its session's start)
    try:
        records = [
            (json.loads(t), json.loads(m))
            for t, m in json.loads(states[-1].read_text())["trial_data"]
        ]
    except (ValueError, KeyError, TypeError):  # a record Ray's encoder wrote oddly: prune later
        return []
    for trial, meta in records:
        if trial["status"] not in ("TERMINATED", "ERROR"):
            continue
        folders = sorted((exp_dir / trial["relative_logdir"]).glob("checkpoint_*"))
        named = (meta.get("last_result") or {}).get("checkpoint_dir_name")
        keep = named if named and any(f.name == named for f in folders) else None
        keep = keep or (folders[-1].name if folders else None)  # last report had none: newest
        for folder in folders:
            if folder.name != keep:
                shutil.rmtree(folder, ignore_errors=True)
                deleted.append(folder)
    return deleted


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


class DriverMemory(Appender):
    """After each trial ends, appends the driver's resident memory and the number of finished
    trials to `<experiment>/driver_memory.jsonl`: the soak checks the driver does not grow."""

    def __init__(self, path: str, method: str) -> None:
        self.path = path  # relative to the experiment (sweeps/relocate.py)
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
        self._append(inside(self.path), json.dumps(row) + "\n")

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
