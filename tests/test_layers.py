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
