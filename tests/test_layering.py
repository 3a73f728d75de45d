"""Imports go one way: importing every unlearn_core module pulls in neither ray nor optuna."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import unlearn_core


def test_unlearn_core_imports_neither_ray_nor_optuna():
    modules = [m.name for m in pkgutil.walk_packages(unlearn_core.__path__, "unlearn_core.")]
    assert "unlearn_core.train" in modules and "unlearn_core.methods.npo" in modules
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'optuna'))\n"
        "print(bad); sys.exit(1 if bad else 0)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
