"""Analysis of a real sweep: a 4-trial NPO sweep on the small built-in benchmark through the CLI,
then `analyze` writes every plot and the report, and `export` a config whose metrics are the
ones the sweep measured at that trial and epoch."""

from __future__ import annotations

import json

import pytest
import yaml

from sweeps.cli import main


@pytest.mark.slow
def test_real_sweep_is_analysed_and_exported(tmp_path, small_benchmark, capsys):
    # epochs fixed at 2 keep it to a few minutes on 2 CPU cores (forget10: its retain model is
    # the one small_benchmark builds)
    code = main(["sweep", "--method", "npo", "--benchmark", "tiny-tofu-small", "--split",
                 "forget10", "--trials", "4", "--fix", "epochs=2", "--max-concurrent", "2",
                 "--output", str(tmp_path), "--name", "real"])
    assert code == 0, capsys.readouterr().err
    home = tmp_path / "real"
    assert main(["analyze", str(home)]) == 0
    out = capsys.readouterr().out
    assert "npo:" in out and "point(s) on the Pareto front" in out
    for stem in ("pareto", "hypervolume", "params-npo", "importance"):
        assert (home / "analysis" / f"{stem}.png").stat().st_size > 0, stem
        assert (home / "analysis" / f"{stem}.html").stat().st_size > 0, stem
    md = (home / "report.md").read_text()
    assert "| npo | 4 |" in md and "## Pareto fronts per series" in md

    assert main(["export", str(home), "--rule", "knee"]) == 0
    doc = yaml.safe_load((home / "best" / "npo.yaml").read_text())
    assert doc == json.loads((home / "best" / "npo.json").read_text())
    assert doc["train"]["epochs"] == 2 and doc["split"] == "forget10"
    assert set(doc["hparams"]) == {"beta", "alpha", "gamma"}
    measured = [json.loads(line) for line in (home / "results" / "npo.jsonl").open()]
    row = next(r for r in reversed(measured) if r["event"] == "result"
               and r["trial_id"] == doc["trial_id"] and r["epoch"] == doc["epoch"])
    assert doc["metrics"]["forget_quality"] == row["forget_quality"]
    assert doc["objectives"]["model_utility"] == row["model_utility"]
