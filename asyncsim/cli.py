"""The `asyncsim` command line: `run` a model, `compare` strategies.

Bad input prints one line per problem and exits 2; a model that cannot be simulated exits 1.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from .api import compare, replicate, simulate
from .errors import AsyncSimError, ModelError
from .spec import Workload, load
from .strategies import parse_strategy

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asyncsim", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="simulate a model under one strategy")
    run.add_argument("model", help="a model file (YAML)")
    run.add_argument("--strategy", "-s", help="override the model's strategy, e.g. asyncio:20 or threads:8")
    run.add_argument("--replications", "-r", type=int, default=1, help="independent runs (mean and 95%% CI)")
    _common(run)

    cmp = sub.add_parser("compare", help="simulate the same draws under several strategies")
    cmp.add_argument("model", help="a model file (YAML)")
    cmp.add_argument("--strategies", "-s", required=True, help="comma-separated, e.g. sequential,threads:8,asyncio")
    _common(cmp)
    return parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `asyncsim` command; returns the exit code."""
    args = _parser().parse_args(argv)
    # piped output gets a width that fits the tables instead of rich's 80-column default
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
    try:
        workload = load(args.model)
        if args.command == "run":
            return _run(workload, args, out)
        return _compare(workload, args, out)
    except ModelError as exc:
        for problem in exc.problems:
            print(f"error: {exc.source + ': ' if exc.source else ''}{problem}", file=sys.stderr)
        return 2
    except AsyncSimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _run(workload: Workload, args: argparse.Namespace, out: Console) -> int:
    if args.replications < 1:
        raise ModelError(f"--replications: must be >= 1 (got {args.replications})")
    strategy = parse_strategy(args.strategy) if args.strategy else None
    if args.replications == 1:
        data = simulate(workload, strategy=strategy, seed=args.seed).to_dict()
    else:
        data = replicate(workload, replications=args.replications, strategy=strategy, seed=args.seed).to_dict()
    if args.json:
        print(json.dumps(data))
    else:
        _print_run(data, workload, out)
    return 0


def _compare(workload: Workload, args: argparse.Namespace, out: Console) -> int:
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if not names:
        raise ModelError("--strategies: give at least one strategy, e.g. sequential,asyncio")
    strategies = [parse_strategy(s) for s in names]
    results = [r.to_dict() for r in compare(workload, strategies, seed=args.seed)]
    if args.json:
        print(json.dumps(results))
        return 0
    table = Table(title=f"{workload.name}: {results[0]['tasks']} tasks, seed {args.seed}", title_justify="left")
    for col in ("strategy", "T_total", "throughput/s", "p50", "p95", "p99", "in flight", "peak", "computing",
                "waiting", "queued"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for r in results:
        c, lat = r["concurrency"], r["latency"]
        table.add_row(r["strategy"], fmt_s(r["t_total"]), f"{r['throughput']:.3g}", fmt_s(lat["p50"]),
                      fmt_s(lat["p95"]), fmt_s(lat["p99"]), f"{c['mean']:.3g}", str(c["peak"]),
                      f"{c['computing_mean']:.3g}", f"{c['waiting_mean']:.3g}", f"{c['queued_mean']:.3g}")
    out.print(table)
    for line in speedups(results):
        out.print(line)
    return 0


def speedups(results: list[dict[str, Any]]) -> list[str]:
    """Plain sentences comparing the fastest strategy's T_total with each other one."""
    best = min(results, key=lambda r: r["t_total"])
    lines = []
    for r in results:
        if r is best or best["t_total"] <= 0:
            continue
        ratio = r["t_total"] / best["t_total"]
        if ratio < 1.01:
            lines.append(f"{best['strategy']} and {r['strategy']} take the same time (within 1%)")
        else:
            lines.append(f"{best['strategy']} is {ratio:.3g}x faster than {r['strategy']}")
    return lines


def fmt_s(seconds: float | None) -> str:
    """A duration for people: 850 µs, 12.3 ms, 4.56 s, 7.5 min, 2.1 h."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    a = abs(seconds)
    if a == 0:
        return "0 s"
    if a < 1e-3:
        return f"{seconds * 1e6:.3g} µs"
    if a < 1:
        return f"{seconds * 1e3:.3g} ms"
    if a < 120:
        return f"{seconds:.3g} s"
    if a < 7200:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def _pm(data: dict[str, Any], *keys: str, fmt: Any = fmt_s) -> str:
    value: Any = data
    half: Any = data.get("ci95")
    for k in keys:
        value = value[k]
        half = half[k] if isinstance(half, dict) else None
    text = fmt(value)
    return f"{text} ± {fmt(half)}" if isinstance(half, float) and not math.isnan(half) else text


def _num(value: float) -> str:
    return f"{value:.3g}"


def _print_run(d: dict[str, Any], workload: Workload, out: Console) -> None:
    reps = f", {d['replications']} replications (mean ± 95% CI)" if "replications" in d else ""
    out.print(f"[bold]{d['model']}[/] under [bold]{d['strategy']}[/], seed {d['seed']}{reps}")
    if workload.description:
        out.print(workload.description.strip())
    c, split = d["concurrency"], d["time_split"]
    rows = [
        ("tasks", f"{d['completed']:g} completed, {d['failed']:g} failed of {d['tasks']:g}"),
        ("T_total", _pm(d, "t_total")),
        ("throughput", _pm(d, "throughput", fmt=_num) + " tasks/s"),
        ("latency", "  ".join(f"{k} {_pm(d, 'latency', k)}" for k in ("mean", "p50", "p95", "p99", "max"))),
        ("in flight", f"mean {_pm(d, 'concurrency', 'mean', fmt=_num)}  peak {c['peak']:g}"),
        ("  of which", f"computing {c['computing_mean']:.3g}  waiting {c['waiting_mean']:.3g}  "
                       f"queued {c['queued_mean']:.3g}"),
        ("time per task", f"CPU {fmt_s(split['task'])}  waiting {fmt_s(split['wait'])}  "
                          f"queued {fmt_s(split['queue'])}"),
    ]
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in rows:
        table.add_row(k, v)
    out.print(table)
    res = Table(title="resources", title_justify="left")
    for col in ("resource", "capacity", "utilization", "mean busy", "mean wait/task", "mean queue"):
        res.add_column(col, justify="left" if col == "resource" else "right")
    for name, r in d["resources"].items():
        util = "-" if r["utilization"] is None else f"{r['utilization']:.1%}"
        res.add_row(name, "∞" if r["capacity"] is None else f"{r['capacity']:g}", util,
                    f"{r['mean_busy']:.3g}", fmt_s(r["mean_wait"]), f"{r['mean_queue']:.3g}")
    out.print(res)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
