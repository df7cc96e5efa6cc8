"""The layering rules hold: only the engine imports simpy; the core never imports reporting or plotting."""

from __future__ import annotations

import ast
from pathlib import Path

import asyncsim

PACKAGE = Path(asyncsim.__file__).parent


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_only_the_engine_imports_simpy():
    offenders = [p.relative_to(PACKAGE) for p in PACKAGE.rglob("*.py")
                 if "simpy" in _imports(p) and p.parent.name != "sim"]
    assert offenders == []


def test_nothing_imports_plotting_libraries():
    offenders = [p.relative_to(PACKAGE) for p in PACKAGE.rglob("*.py")
                 if _imports(p) & {"matplotlib", "seaborn"} and p.stem != "report"]
    assert offenders == []


def test_public_api_is_exported():
    for name in asyncsim.__all__:
        assert hasattr(asyncsim, name), name


def _package_imports(path: Path) -> set[str]:
    """The asyncsim modules a module imports (`from .x import` and `from . import x`), by top-level name."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            names.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
    return names


def test_typed_results_sit_between_the_trace_and_metrics():
    """trace → states → stats → results → metrics: a result type never imports what computes it or reads it."""
    order = ["trace", "states", "stats", "results", "metrics"]
    above = {"metrics", "api", "bounds", "cli", "report", "ranking", "sweep", "plan", "validate", "sim", "real",
             "_saved"}
    for k, name in enumerate(order):
        imported = _package_imports(PACKAGE / f"{name}.py")
        assert not imported & (set(order[k + 1:]) | above - {name}), name
