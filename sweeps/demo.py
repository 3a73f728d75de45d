"""`make demo`: build the built-in benchmark (first run only), unlearn it once with NPO, and print
the TOFU metrics before and after."""

from __future__ import annotations

import sys
import time

from sweeps.cli import main as cli

DEMO = ["unlearn", "--method", "npo", "--benchmark", "tiny-tofu", "--split", "forget10",
        "--lr", "1e-3", "--epochs", "5", "--batch-size", "8", "--grad-accum", "4",
        "--hp", "beta=0.1", "--hp", "alpha=1.0"]


def main() -> int:
    start = time.perf_counter()
    print("== preparing the built-in benchmark tiny-tofu (cached after the first run)")
    code = cli(["prepare", "tiny-tofu", "--splits", "forget10"])
    if code:
        return code
    print("\n== unlearning forget10 with NPO: unlearn-sweep " + " ".join(DEMO))
    code = cli(DEMO)
    print(f"\ndemo finished in {time.perf_counter() - start:.0f} s")
    return code


if __name__ == "__main__":
    sys.exit(main())
