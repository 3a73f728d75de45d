"""`make demo`: verify the shipped built-in benchmark, sweep the main methods with a small
budget in parallel on the available CPUs, analyse the experiment, export the best configs, and
print where the plots, the report and the configs are."""

from __future__ import annotations

import contextlib
import datetime
import os
import sys
import time
from pathlib import Path

from sweeps import experiment
from unlearn_sweep.cli import main as cli

METHODS = ("grad_diff", "npo", "simnpo", "idk_dpo", "me_gd", "rmu")
TRIALS = 4  # per method: the reference defaults first, then 3 chosen by TPE


def main() -> int:
    start = time.perf_counter()
    print("== checking the shipped built-in benchmark tiny-tofu (sha256 of every file)", flush=True)
    with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
        if code := cli(["prepare", "tiny-tofu"]):
            return code
    name = "demo-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    home = Path("experiments") / name
    sweep = [
        "sweep",
        "--method",
        ",".join(METHODS),
        "--benchmark",
        "tiny-tofu",
        "--split",
        "forget05",
        "--trials",
        str(TRIALS),
        "--space",
        "epochs=1:4:int",
        "--eval-every",
        "2",
        "--output",
        "experiments",
        "--name",
        name,
    ]
    print(
        f"\n== sweeping {len(METHODS)} methods, {TRIALS} trials each: unlearn-sweep "
        + " ".join(sweep[1:]),
        flush=True,
    )
    if code := cli(sweep):
        return code
    print("\n== analysing", flush=True)
    if code := cli(["analyze", str(home)]):
        return code
    print("\n== exporting the knee point of each method's front", flush=True)
    if code := cli(["export", str(home), "--rule", "knee"]):
        return code
    analysis, best = experiment.plots_path(home), experiment.best_path(home, "npo", ".yaml")
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s")
    print(
        f"  Pareto plot:      {analysis / 'pareto.png'}  (interactive: {analysis / 'pareto.html'})"
    )
    md, html = experiment.report_path(home, ".md"), experiment.report_path(home, ".html")
    print(f"  report:           {md}  and  {html}")
    print(
        f"  exported configs: {best.parent}/<method>.yaml  "
        f"(rerun one: unlearn-sweep unlearn --config {best})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
