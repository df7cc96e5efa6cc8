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


# The layers, lowest first: a module imports modules of its own layer or below, never above, and the import
# graph has no cycle (a cycle hidden behind TYPE_CHECKING or a function-level import is a layering bug).
LAYERS = [
    ("foundations", ["errors", "_model", "_io", "_json", "_version", "_format", "trace", "states", "stats", "dists",
                     "strategies", "theory", "curves"]),
    ("model data", ["policies", "services", "spec", "profile"]),
    ("draws", ["scenario", "steady"]),
    ("rules", ["rules"]),
    ("executors", ["sim", "real", "serve"]),  # serve: the emulated API, an executor of services' rules
    ("metrics", ["results", "metrics", "bounds", "api"]),  # results holds a Steady verdict (draws)
    # ranking orders Results; twin and record run a program and compute its Result
    ("analyses", ["validate", "sweep", "plan", "_saved", "ranking", "twin", "record"]),
    # Markdown and figures; the command line's tables; fitting writes its report
    ("reports", ["report", "console", "fitting"]),
    ("front", ["cli", "__main__", ""]),
]
# the command line imports its heavier commands when they run (start-up time); nothing else imports lazily
LAZY_OK = {"cli"}


def _module(path: Path) -> str:
    parts = path.with_suffix("").relative_to(PACKAGE).parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    """Every asyncsim module's imports of other asyncsim modules (relative to the package)."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        mod = _module(path)
        base = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                prefix = [p for p in base[:len(base) - (node.level - 1)] if p]
                names = [node.module] if node.module else [a.name for a in node.names]
                deps.update(".".join([*prefix, n]) for n in names)
        graph[mod] = {d for d in deps if d != mod}
    return graph


def _layer(mod: str) -> int:
    top = mod.split(".")[0]
    for k, (_, members) in enumerate(LAYERS):
        if top in members:
            return k
    raise AssertionError(f"module {mod!r} is in no layer: add it to LAYERS")


def test_every_import_goes_to_the_same_layer_or_below():
    bad = [f"{mod} ({LAYERS[_layer(mod)][0]}) imports {dep} ({LAYERS[_layer(dep)][0]})"
           for mod, deps in _graph().items() for dep in deps if _layer(dep) > _layer(mod)]
    assert bad == []


def test_the_simulator_and_the_real_runner_never_import_each_other():
    graph = _graph()
    assert [(m, d) for m, deps in graph.items() for d in deps
            if {m.split(".")[0], d.split(".")[0]} == {"sim", "real"}] == []


def test_the_import_graph_has_no_cycle():
    graph = _graph()
    done: set[str] = set()

    def visit(mod: str, path: list[str]) -> None:
        if mod in path:
            raise AssertionError(" -> ".join([*path[path.index(mod):], mod]))
        if mod in done:
            return
        for dep in sorted(graph.get(mod, ())):
            visit(dep, [*path, mod])
        done.add(mod)

    for mod in sorted(graph):
        visit(mod, [])


def test_no_module_hides_an_import_of_another():
    hidden = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                hidden += [f"{_module(path)}: {ast.unparse(n)}" for n in node.body
                           if isinstance(n, ast.ImportFrom) and n.level]
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _module(path) not in LAZY_OK:
                hidden += [f"{_module(path)}.{node.name}: {ast.unparse(n)}" for n in ast.walk(node)
                           if isinstance(n, ast.ImportFrom) and n.level]
    assert hidden == []
