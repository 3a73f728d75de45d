"""`sweep --confirm 1` for real (Ray and Optuna on CPU, the small built-in benchmark): the knee
point rerun on 3 fresh seeds as Ray trials of the sweep's trainable, recorded with mean, std and
interval; a second `confirm` with the same seeds runs nothing and keeps the record; analyze and
export then use it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "unlearn_sweep", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_sweep_confirms_its_knee_point_on_fresh_seeds(tmp_path, small_benchmark):
    run = cli(
        *("sweep", "--method", "npo", "--benchmark", "tiny-tofu-small", "--split", "forget01"),
        *("--trials", "2", "--fix", "epochs=1", "--max-concurrent", "1", "--confirm", "1"),
        *("--output", str(tmp_path), "--name", "exp"),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    home = tmp_path / "exp"
    assert "confirmed:" in run.stdout and "(knee #1)" in run.stdout
    doc = json.loads((home / "confirmed.json").read_text())
    (point,) = doc["methods"]["npo"]["points"]
    assert [r["seed"] for r in point["runs"]] == [1000, 1001, 1002]  # never the sweep's seed 0
    rows = [json.loads(x) for x in (home / "results" / "npo.jsonl").read_text().splitlines()]
    (swept,) = [
        r
        for r in rows
        if r["event"] == "result"
        and r["trial_id"] == point["trial"]
        and r["run"]["epoch"] == point["epoch"]
    ]
    for r in point["runs"]:  # the same job as the sweep's trial, another seed
        assert r["optimizer_steps"] == swept["run"]["optimizer_steps"]
        assert set(r["objectives"]) == {"log10_forget_quality", "model_utility"}
    for key, s in point["objectives"].items():
        assert s["sweep"] == swept["objectives"][key] and s["n"] == 3
        values = [r["objectives"][key] for r in point["runs"]]
        assert s["mean"] == pytest.approx(sum(values) / 3)
        assert s["low"] <= s["mean"] <= s["high"] and s["std"] >= 0
    assert not (home / "ray" / "confirm").exists()  # confirm's Ray storage is removed
    before = (home / "confirmed.json").read_text()
    again = cli("confirm", str(home), "--top", "1", "--seeds", "3")
    assert again.returncode == 0, again.stderr[-3000:]
    assert (home / "confirmed.json").read_text() == before  # every seed there: nothing rerun
    assert cli("analyze", str(home)).returncode == 0
    assert f"| {point['trial']} | {point['epoch']} | 3 |" in (home / "report.md").read_text()
    exported = cli("export", str(home), "--rule", "knee")
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert "chosen with the fresh-seed means of 1 confirmed point(s)" in exported.stdout
