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


PACKAGES = ("unlearn_core", "search_spaces", "sweeps", "analysis")


def _imports() -> dict[str, set[str]]:
    """Module -> the project modules it imports (at any depth of the file), read with ast."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    graph = {}
    for pkg in (*PACKAGES, "unlearn_sweep"):
        for path in (root / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
            found = set()
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
                elif isinstance(node, ast.Import):
                    found |= {a.name for a in node.names}
            graph[name] = found
    # a module's own packages are imported before it anyway: `from pkg import sub` is no cycle
    return {
        m: {i for i in deps if i in graph and i != m and not m.startswith(f"{i}.")}
        for m, deps in graph.items()
    }


def test_no_package_imports_the_command_line():
    graph = _imports()
    assert "unlearn_sweep.cli" in graph and "sweeps.launch" in graph
    upward = sorted(
        (m, i)
        for m, deps in graph.items()
        for i in deps
        if m.split(".")[0] in PACKAGES and i.split(".")[0] == "unlearn_sweep"
    )
    assert upward == []


def test_the_import_graph_has_no_cycle():
    graph = _imports()
    done: set[str] = set()

    def visit(m: str, path: tuple[str, ...]) -> None:
        assert m not in path, f"import cycle: {' -> '.join((*path, m))}"
        if m in done:
            return
        for i in sorted(graph[m]):
            visit(i, (*path, m))
        done.add(m)

    for m in sorted(graph):
        visit(m, ())
