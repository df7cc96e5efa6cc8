"""The `asyncsim` command line: `run`, `compare`, `sweep`, `plan`, `validate`, `calibrate`, `report`.

Bad input prints one line per problem and exits 2; a model that cannot be simulated exits 1.
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from . import _json
from ._io import write_atomic
from ._saved import SavedRun
from ._version import __version__
from .api import compare, replicate, simulate
from .bounds import Bound, bounds
from .errors import AsyncSimError, ModelError
from .profile import MachineProfile
from .ranking import complete, lost_text, ranked, speedups
from .results import Result
from .scenario import build_scenario
from .spec import Workload, load
from .steady import Steady
from .strategies import parse_strategy

__all__ = ["main"]


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Help that ends each option with its default, unless it has none or its help already says it.

    `_get_help_string` is the hook ArgumentDefaultsHelpFormatter itself overrides, not public API;
    tests/test_hygiene.py reads every subcommand's help, so a change in argparse fails loudly.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        nothing = action.default is None or action.default is False or action.default == []
        if nothing or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _parser() -> argparse.ArgumentParser:

    parser = argparse.ArgumentParser(prog="asyncsim", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # typeshed wants a class for parser_class; argparse only calls it, and a partial is the plainest callable
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",  # type: ignore[call-overload]
                                parser_class=functools.partial(argparse.ArgumentParser, formatter_class=_Help))

    run = sub.add_parser("run", help="simulate a model under one strategy")
    run.add_argument("model", help="a model file (YAML)")
    run.add_argument("--strategy", "-s", help="override the model's strategy, e.g. asyncio:20 or threads:8")
    run.add_argument("--replications", "-r", type=int, default=1, help="independent runs (mean and 95%% CI)")
    _common(run)
    _run_limits(run)

    cmp = sub.add_parser("compare", help="simulate the same draws under several strategies")
    cmp.add_argument("model", help="a model file (YAML)")
    cmp.add_argument("--strategies", "-s", required=True, help="comma-separated, e.g. sequential,threads:8,asyncio")
    _common(cmp)
    _run_limits(cmp)

    val = sub.add_parser("validate", help="run the same draws for real and compare with the prediction")
    val.add_argument("model", help="a model file (YAML)")
    group = val.add_mutually_exclusive_group()
    group.add_argument("--strategy", help="one strategy (default: the model's)")
    group.add_argument("--strategies", help="comma-separated strategies")
    val.add_argument("--time-scale", default="1",
                     help="run every duration × this factor (results are reported in model seconds); "
                          "'auto' picks the smallest scale this machine's timers honour with margin")
    val.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio", help="event loop for asyncio runs")
    val.add_argument("--out", metavar="FILE", help="also save the results as JSON (written atomically, kept if "
                                                  "the run is interrupted)")
    _common(val)

    sw = sub.add_parser("sweep", help="simulate a grid of model variants, each with replications")
    sw.add_argument("model", help="a model file (YAML)")
    sw.add_argument("--set", dest="sets", action="append", required=True, metavar="PATH=VALUES",
                    help="vary a model field: strategy=asyncio:{1,2,4} or pools.db=5,10,20 (repeat for a grid)")
    sw.add_argument("--replications", "-r", type=int, default=1, help="independent runs per grid point")
    sw.add_argument("--workers", "-w", type=int, default=os.cpu_count() or 1,
                    help="local worker processes (default: the number of cores)")
    sw.add_argument("--scheduler", metavar="ADDRESS",
                    help="run on a Dask cluster instead of local processes (tcp://host:8786; "
                         "needs pip install 'asyncsim[dask]')")
    sw.add_argument("--out", "-o", metavar="FILE",
                    help="one row per run, as .parquet or .csv; an existing file is resumed (finished runs kept)")
    _common(sw)

    pl = sub.add_parser("plan", help="the best setting (or the highest arrival rate) that meets SLOs without "
                                     "losing work")
    pl.add_argument("model", help="a model file (YAML)")
    pl.add_argument("--vary", metavar="PATH=RANGE", help="e.g. strategy=asyncio:1..512 or pools.db=1..64")
    pl.add_argument("--find", choices=("setting", "min-setting", "max-rate"), default="setting",
                    help="setting: the best setting of --vary (min-setting is the same); max-rate: the highest "
                         "Poisson arrival rate meeting the SLOs (give --rate LO..HI)")
    pl.add_argument("--rate", metavar="LO..HI", help="arrival rates to search with --find max-rate")
    pl.add_argument("--slo", action="append", default=[], metavar="SLO",
                    help="e.g. 'p99 < 20s', 'failed_fraction <= 0.1%%', 'interactive.p99 < 2s' (repeatable)")
    pl.add_argument("--deadline", metavar="TIME", help="shorthand for --slo 't_total <= TIME', e.g. 30m")
    pl.add_argument("--objective", choices=("t_total", "goodput", "cost", "smallest"), default="t_total",
                    help="what the best feasible setting minimises (goodput: maximises; smallest: the setting)")
    pl.add_argument("--tolerance", type=_finite, default=0.01,
                    help="settings within this fraction of the best objective are as good; the smallest wins")
    pl.add_argument("--allow-failures", action="store_true",
                    help="drop the default constraint failed <= 0 (an SLO on failed, failed_fraction or "
                         "completed replaces it too)")
    pl.add_argument("--replications", "-r", type=int, default=5, help="seeded runs per candidate")
    pl.add_argument("--confidence", type=_finite, default=0.95, help="one-sided confidence for each SLO")
    pl.add_argument("--cost", type=_finite, help="price per unit of the varied setting (adds to --objective cost)")
    _common(pl)

    for p in (run, cmp, sw, pl):
        p.add_argument("--warmup", metavar="S|auto",
                       help="leave tasks arriving before S seconds out of latency percentiles and throughput; "
                            "auto: MSER-5 finds the transient (open and closed arrivals)")

    cal = sub.add_parser("calibrate", help="measure this machine's overheads into a machine profile")
    cal.add_argument("--out", "-o", default="machine-profile.json", help="where to write the profile (JSON)")
    cal.add_argument("--repeats", type=int, default=3, help="repetitions per measurement (median)")
    cal.add_argument("--json", action="store_true", help="print the profile as JSON")

    for p in (run, cmp, val):
        p.add_argument("--machine-profile", metavar="FILE",
                       help="a profile from `asyncsim calibrate`: simulate with this machine's overheads")
        p.add_argument("--detail", action="store_true",
                       help="with --json/--out: add per-task latencies and the concurrency series under 'detail' "
                            "(for `asyncsim report`; grows with the task count)")

    rep = sub.add_parser("report", help="turn a saved run / compare / sweep / validate output into a report")
    rep.add_argument("results", help="run/compare --json output, sweep --out table, or validate --out/--json output")
    rep.add_argument("--out", "-o", required=True, metavar="DIR", help="folder for report.md and its figures")
    return parser


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _run_limits(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-sim-time", type=_finite, metavar="SECONDS",
                   help="stop (with an error saying so) when simulated time passes this")
    p.add_argument("--max-events", type=int, metavar="N", help="stop (with an error saying so) after N events")


def _finite(text: str) -> float:
    """An argparse type: a finite number (`float` alone takes 'inf' and 'nan')."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number (got {text!r})") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number (got {text!r})")
    return value


def _warmup(args: argparse.Namespace) -> float | str | None:
    """--warmup as simulate's `warmup`: None, "auto" or seconds."""
    if args.warmup is None or args.warmup == "auto":
        return args.warmup
    try:
        seconds = float(args.warmup)
    except ValueError:
        raise ModelError(f"--warmup: must be seconds or 'auto' (got {args.warmup!r})") from None
    if not seconds >= 0 or math.isinf(seconds):
        raise ModelError(f"--warmup: must be seconds >= 0 or 'auto' (got {args.warmup})")
    return seconds


def _limits(args: argparse.Namespace) -> dict[str, Any]:
    for flag, value in (("--max-sim-time", args.max_sim_time), ("--max-events", args.max_events)):
        if value is not None and not value > 0:
            raise ModelError(f"{flag}: must be > 0 (got {value:g})")
    return {"max_sim_time": args.max_sim_time, "max_events": args.max_events}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `asyncsim` command; returns the exit code."""
    args = _parser().parse_args(argv)
    # piped output gets a width that fits the tables instead of rich's 80-column default
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
    try:
        if args.command == "calibrate":
            return _calibrate(args, out)
        if args.command == "report":
            return _report(args, out)
        workload = load(args.model)  # validates the model before anything else (a sweep too)
        if args.command == "sweep":
            return _sweep(args, out)
        if args.command == "plan":
            return _plan(args, out)
        profile = MachineProfile.read(args.machine_profile) if args.machine_profile else None
        if args.command == "validate":
            return _validate(workload, profile, args, out)
        if profile is not None:
            workload = _with_profile(workload, profile, args)
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
        first = simulate(workload, strategy=strategy, seed=args.seed, warmup=_warmup(args), **_limits(args))
        data = first.to_dict()
    else:
        summary = replicate(workload, replications=args.replications, strategy=strategy, seed=args.seed,
                              warmup=_warmup(args), **_limits(args))
        first, data = summary.runs[0], summary.to_dict()
    if args.detail:
        data["detail"] = _detail(first)
    # the bounds of the run whose per-task data is kept (the first replication's draws)
    scenario = build_scenario(workload, seed=first.seed if first.seed is not None else args.seed, strategy=strategy)
    limits = bounds(scenario)
    data["bounds"] = {b.name: b.seconds for b in limits}
    data["binding"] = limits[0].name
    done: list[Bound] = []
    if first.lost:  # bounds of the work that was done: the run's T_total meets them, not those of all the work
        done = bounds(scenario, completed=first.completed_tasks)
        data["bounds_completed"] = {b.name: b.seconds for b in done}
    if args.json:
        print(_json.dumps(_null_reasons(data)))
    else:
        shown = SavedRun.from_dict(data)  # what the JSON holds (with replications, their means), as report reads it
        _print_run(shown, workload, out)
        _print_limits(shown.result, limits, out, whole="bounds_completed" in data)
        _print_lost_bounds(first, limits, done, out)
        if shown.result.steady is not None:
            out.print(_steady_line(shown.result.steady))
        elif args.warmup is not None:
            out.print("[dim]--warmup: batch arrivals (all at once) have no steady state; no warm-up dropped[/]")
    return 0


def _steady_line(steady: Steady) -> str:
    """A run's steady-state verdict, red when there is no steady state to report."""
    if steady.stable:
        return steady.summary()
    return f"[red]{steady.summary()}[/]" if steady.overloaded else f"[yellow]{steady.summary()}[/]"


def _print_limits(result: Result, limits: list[Bound], out: Console, *, whole: bool = False) -> None:
    """Per-class, per-service and per-stage tables, then which limit binds: each bound next to the prediction
    (`whole`: the bounds are those of all the work, of which some was lost)."""
    if result.classes:
        table = Table(title="classes", title_justify="left")
        for col in ("class", "tasks", "completed", "failed", "T_total", "throughput/s", "p50", "p95", "p99",
                    "deadline missed"):
            table.add_column(col, justify="left" if col == "class" else "right")
        for name, c in result.classes.items():
            missed = (f"{c.deadline_missed:g} of {c.tasks:g} ({fmt_s(c.deadline)})"
                      if c.deadline is not None and c.deadline_missed is not None else "-")
            table.add_row(name, f"{c.tasks:g}", f"{c.completed:g}", f"{c.failed:g}", fmt_s(c.t_total),
                          f"{c.throughput:.3g}", fmt_s(c.latency.p50), fmt_s(c.latency.p95), fmt_s(c.latency.p99),
                          missed)
        out.print(table)
    if result.services:
        table = Table(title="services", title_justify="left")
        cols = ("calls", "requests", "ok", "rate_limited", "server_error", "timeout", "rejected", "retries",
                "failed", "tokens", "tokens_wasted", "batch_size_mean")
        table.add_column("service")
        for col in cols:
            table.add_column(col.replace("_", " "), justify="right")
        for name, sv in result.services.items():
            table.add_row(name, *("-" if (v := getattr(sv, c)) is None else f"{v:.4g}" for c in cols))
        out.print(table)
    if result.stages:
        table = Table(title=f"pipeline stages (bottleneck: {result.bottleneck})", title_justify="left")
        table.add_column("stage")
        for col in ("items", "throughput", "workers", "utilization", "batch size mean", "mean queue", "mean wait"):
            table.add_column(col, justify="right")
        for name, st in result.stages.items():
            table.add_row(name, f"{st.items:.4g}", f"{st.throughput:.4g}", f"{st.workers:.4g}", f"{st.utilization:.1%}",
                          f"{st.batch_size_mean:.4g}", f"{st.mean_queue:.4g}", fmt_s(st.mean_wait))
        out.print(table)
    top = limits[0]
    share = f", {result.t_total / top.seconds:.0%} of the bound" if top.seconds > 0 else ""
    out.print(f"[bold]binding limit{' (for all the work)' if whole else ''}:[/] {top.name}: T_total ≥ "
              f"{fmt_s(top.seconds)} ({top.detail}); predicted {fmt_s(result.t_total)}{share}")
    others = [f"{b.name} ≥ {fmt_s(b.seconds)}" for b in limits[1:4] if b.seconds > 0]
    if others:
        out.print("next limits: " + "; ".join(others))


def _print_lost_bounds(run: Result, limits: list[Bound], done: list[Bound], out: Console) -> None:
    """When work was lost: say that the bounds of all the work no longer apply, and give those of the work done."""
    if not done:
        return
    below = run.t_total < limits[0].seconds * (1 - 1e-9)
    what = (f"T_total {fmt_s(run.t_total)} is below the {fmt_s(limits[0].seconds)} that all the work needs under "
            f"{limits[0].name}, because" if below else "the bounds above count work that was never done:")
    out.print(f"[red]{what} {run.lost:,} of {run.tasks:,} tasks did not complete (their remaining work was never "
              f"done); bounds of the work of the {run.completed:,} that completed: {done[0].name} ≥ "
              f"{fmt_s(done[0].seconds)} ({done[0].detail})[/]")


def _compare(workload: Workload, args: argparse.Namespace, out: Console) -> int:
    names = [s.strip() for s in args.strategies.split(",") if s.strip()]
    if not names:
        raise ModelError("--strategies: give at least one strategy, e.g. sequential,asyncio")
    strategies = [parse_strategy(s) for s in names]
    runs = compare(workload, strategies, seed=args.seed, warmup=_warmup(args), **_limits(args))
    if args.json:
        results = [r.to_dict() | ({"detail": _detail(r)} if args.detail else {}) for r in runs]
        print(_json.dumps([_null_reasons(r) for r in results]))
        return 0
    table = Table(title=f"{workload.name}: {runs[0].tasks} tasks, seed {args.seed}", title_justify="left")
    flight = Table(title="tasks in flight (time-averaged) and what they were doing", title_justify="left")
    extra = _outcome_columns([run.metrics() for run in runs])
    for col in ("strategy", "completed", "failed", *extra, "T_total", "goodput/s", "p50", "p95", "p99"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for col in ("strategy", "in flight", "peak", "computing", "waiting", "throttled", "queued"):
        flight.add_column(col, justify="left" if col == "strategy" else "right")
    for run in runs:
        c, lat = run.concurrency, run.latency
        unstable = "" if run.steady is None or run.steady.stable else " [red]unstable[/]"
        table.add_row(_marked(run.strategy, run) + unstable, *_outcome_cells(run.metrics(), extra),
                      fmt_s(run.t_total), f"{run.goodput:.3g}", fmt_s(lat.p50), fmt_s(lat.p95), fmt_s(lat.p99))
        flight.add_row(run.strategy, f"{c.mean:.3g}", str(c.peak),
                       *(f"{getattr(c, s):.3g}" for s in ("computing", "waiting", "throttled", "queued")))
    out.print(table)
    out.print(flight)
    for line in speedups(runs):
        out.print(line)
    for run in runs:
        if run.steady is not None and not run.steady.stable:
            out.print(f"{run.strategy}: {_steady_line(run.steady)}")
    return 0


def _outcome_columns(rows: Any) -> tuple[str, ...]:
    """The columns a table of these runs (metrics, or summary rows) needs beyond completed and failed: 429s
    and retries where services were called, cost where anything was billed."""
    def seen(key: str) -> bool:
        return any(float(r[f"{key}_mean"] if f"{key}_mean" in r else r[key]) > 0 for r in rows)

    return (("429s", "retries") if seen("requests") else ()) + (("cost",) if seen("cost") else ())


_OUTCOME_KEYS = {"completed": "completed", "failed": "failed", "429s": "rate_limited", "retries": "retries",
                 "cost": "cost"}


def _outcome_cells(metrics: Any, extra: tuple[str, ...], half: Any = None) -> list[str]:
    """completed, failed and `extra` (429s, retries, cost) of one run's metrics or a summary row (`_mean`)."""
    cells = []
    for col in ("completed", "failed", *extra):
        key = _OUTCOME_KEYS[col]
        value = float(metrics[f"{key}_mean"] if f"{key}_mean" in metrics else metrics[key])
        text = _money(value) if col == "cost" else _count(value)
        cells.append(f"[red]{text}[/]" if col == "failed" and value > 0 else text)
    return cells


def _best_point(rows: list[Any], params: list[str]) -> str:
    """'fastest without lost work: strategy=asyncio:8 (14.5 min); 3 of 6 points lose work (⚠)'."""
    lossy = sum(not complete(r) for r in rows)
    note = f"; {lossy} of {len(rows)} points lose work (⚠, not ranked)" if lossy else ""
    best = ranked(rows)[0]
    where = " ".join(f"{p}={best[p]}" for p in params)
    if not complete(best):
        return f"[red]no point completes every task[/]; the fewest lost: {where} ({lost_text(best)})"
    return f"fastest without lost work: {where} ({fmt_s(best['t_total_mean'])}){note}"


def _marked(label: str, entry: Any) -> str:
    """A row label, marked ⚠ when its run loses work (rankings never prefer it; a sentence says how much)."""
    return label if complete(entry) else f"{label} [red]⚠[/]"


def _sweep(args: argparse.Namespace, out: Console) -> int:
    from .sweep import grid, load_raw, parse_set, summarize, sweep

    if args.replications < 1:
        raise ModelError(f"--replications: must be >= 1 (got {args.replications})")
    if args.workers < 1:
        raise ModelError(f"--workers: must be >= 1 (got {args.workers})")
    sets = [parse_set(text) for text in args.sets]
    raw, base_dir = load_raw(args.model)
    points = grid(sets)
    params = [path for path, _ in sets]
    bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("runs"),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), disable=args.json)
    job: list[Any] = []

    def progress(done: int, total: int) -> None:
        if not job:  # the sweep calls back once every grid point has been validated
            bar.start()
            job.append(bar.add_task("sweep", total=total))
        bar.update(job[0], completed=done, total=total)

    try:
        frame = sweep(raw, points, replications=args.replications, seed=args.seed, workers=args.workers,
                      progress=progress, out=args.out, base_dir=base_dir, scheduler=args.scheduler,
                      warmup=_warmup(args))
    finally:
        bar.stop()
    summary = summarize(frame, params)
    if args.out:
        target = Path(args.out)
        summary_path = target.with_name(f"{target.stem}-summary.csv")
        write_atomic(summary_path, summary.to_csv(index=False))
    if args.json:
        print(_json.dumps(summary.to_dict(orient="records")))
        return 0
    table = Table(title=f"{raw.get('name', args.model)}: {len(points)} grid points × {args.replications} "
                        f"replication(s), seed {args.seed}", title_justify="left")
    rows = [row for _, row in summary.iterrows()]
    extra = _outcome_columns(rows)
    for col in (*params, "completed", "failed", *extra, "T_total", "goodput/s", "p95", "in flight"):
        table.add_column(col, justify="left" if col in params else "right")
    for row in rows:
        def pm(metric: str, fmt: Any = fmt_s, row: Any = row) -> str:
            half = row[f"{metric}_ci95"]
            text = fmt(row[f"{metric}_mean"])
            return text if half != half or half == 0 else f"{text} ± {fmt(half)}"  # NaN: a single replication

        labels = [str(row[p]) for p in params]
        labels[0] = _marked(labels[0], row) + (" [red]unstable[/]" if row.get("overloaded_mean", 0) > 0 else "")
        table.add_row(*labels, *_outcome_cells(row, extra), pm("t_total"), pm("goodput", _num),
                      pm("latency_p95"), pm("concurrency_mean", _num))
    out.print(table)
    out.print(_best_point(rows, params))
    for line in _crossover_lines(summary, params):
        out.print(line)
    if args.out:
        out.print(f"wrote {args.out} ({len(frame)} runs) and {summary_path}")
    return 0


def _plan(args: argparse.Namespace, out: Console) -> int:
    from .plan import find_max_rate, parse_slo, parse_vary, plan
    from .sweep import load_raw

    texts = list(args.slo) + ([f"t_total <= {args.deadline}"] if args.deadline else [])
    if not texts and args.allow_failures:
        raise ModelError("--slo: with --allow-failures give at least one SLO, e.g. --slo 'p99 < 20s' or "
                         "--deadline 30m")
    slos = [parse_slo(t) for t in texts]
    raw, base_dir = load_raw(args.model)
    if args.find == "max-rate":
        lo_hi = (args.rate or "").split("..")
        try:
            lo, hi = float(lo_hi[0]), float(lo_hi[1])
        except (IndexError, ValueError):
            raise ModelError(f"--rate: give LO..HI arrival rates, e.g. 1..100 (got {args.rate!r})") from None
        result = find_max_rate(raw, slos=slos, lo=lo, hi=hi, replications=args.replications, seed=args.seed,
                               confidence=args.confidence, base_dir=base_dir, allow_failures=args.allow_failures,
                               warmup=_warmup(args))
    else:
        if not args.vary:
            raise ModelError("--vary: give the setting to search, e.g. --vary strategy=asyncio:1..512")
        vary = parse_vary(args.vary)
        result = plan(raw, vary=vary, slos=slos, replications=args.replications, seed=args.seed,
                      confidence=args.confidence, base_dir=base_dir, cost=args.cost, objective=args.objective,
                      tolerance=args.tolerance, allow_failures=args.allow_failures, warmup=_warmup(args))
    if args.json:
        print(_json.dumps(result.to_dict(), default=str))
        return 0
    _print_plan(result, args, raw, base_dir, out)
    return 0


_OBJECTIVE_WORDS = {"t_total": "finishes soonest", "goodput": "has the highest goodput", "cost": "costs least",
                    "smallest": "is the smallest setting"}


def _print_plan(result: Any, args: argparse.Namespace, raw: dict[str, Any], base_dir: Any, out: Console) -> None:
    """The answer in words, how the range was searched, and the curve it walked with the lost work of each point."""
    goal = " and ".join(str(s) + (" (no lost work)" if s.implicit else "") for s in result.slos)
    if result.answer is None:
        closest = next(p for p in result.curve if p.param == result.at)
        out.print(f"[red]no setting of {result.path} in the range meets {goal}[/]; the closest, {closest.value}, "
                  f"misses {result.binding} by {-min(result.margin.values()):.1%}")
        floor = _floor_line(result, args, raw, base_dir)
        if floor:
            out.print(floor)
    else:
        point = result.point
        what = _OBJECTIVE_WORDS[result.objective] if args.find != "max-rate" else "is the highest rate"
        among = f" (the smallest within {result.tolerance:.0%} of the best)" if result.tolerance and args.find != \
            "max-rate" and result.objective != "smallest" else ""
        margins = ", ".join(f"{k}: {v:.1%} slack" for k, v in result.margin.items())
        out.print(f"[bold]{result.path} = {result.value}[/] {what}{among} among the settings that meet {goal} "
                  f"with {args.confidence:.0%} confidence: T_total {fmt_s(point.mean['t_total'])}, "
                  f"{_count(point.mean['completed'])} tasks completed ({margins}; binding: {result.binding})")
        if result.cost is not None:
            out.print(f"cost of the setting: {result.cost:g}")
    out.print(f"[dim]searched {result.method}: {result.evaluations} settings × {result.replications} runs[/]")
    table = Table(title="the curve it walked", title_justify="left")
    table.add_column(result.path)
    for col in ("completed", "failed", "T_total"):
        table.add_column(col, justify="right")
    shown = [s for s in result.slos if s.key not in ("failed", "t_total")]
    for slo in shown:
        table.add_column(f"{slo.metric} (mean, bound)", justify="right")
    table.add_column("meets", justify="center")
    for p in result.curve:
        cells = [f"{p.mean[s.key]:.4g} ({(p.high if s.upper else p.low)[s.key]:.4g})" for s in shown]
        failed = _count(p.mean["failed"])
        table.add_row(str(p.value), _count(p.mean["completed"]), f"[red]{failed}[/]" if p.mean["failed"] else failed,
                      fmt_s(p.mean["t_total"]), *cells,
                      "[bold]answer[/]" if p.param == result.answer else ("yes" if p.met else "no")
                      + (" [red](unstable)[/]" if p.mean["overloaded"] else ""))
    out.print(table)


def _floor_line(result: Any, args: argparse.Namespace, raw: dict[str, Any], base_dir: Any) -> str | None:
    """When a T_total SLO cannot be met by any setting: the floor all the work needs, at the most generous one."""
    deadline = next((s for s in result.slos if s.key == "t_total" and s.upper), None)
    if deadline is None or not result.curve:
        return None
    from .sweep import build

    generous = result.curve[-1]
    workload = build(raw, {result.path: generous.value}, base_dir=base_dir)
    limits = [b for b in bounds(build_scenario(workload, seed=args.seed)) if not b.name.startswith("concurrency")]
    if not limits or limits[0].seconds <= deadline.bound:
        return None
    top = limits[0]
    return (f"[red]{deadline} is below the floor of the work itself: {top.name} needs T_total ≥ "
            f"{fmt_s(top.seconds)} ({top.detail}) whatever the setting[/]")


# --- report, and what run/compare/validate add for it (--detail) ---------------------------------------


def _report(args: argparse.Namespace, out: Console) -> int:
    from .report import plotting_missing, report

    missing = plotting_missing()
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    path = report(args.results, args.out, command=["asyncsim", "report", args.results, "--out", args.out])
    out.print(f"wrote {path}")
    return 0


def _detail(result: Result) -> dict[str, Any]:
    from .report import detail

    return detail(result)


def _validation_dict(v: Any, *, detail: bool) -> dict[str, Any]:
    data = v.to_dict()
    for run in ("predicted", "measured", "replayed"):
        _null_reasons(data[run])
    if detail:
        for run in ("predicted", "measured", "replayed"):
            data[run]["detail"] = _detail(getattr(v, run))
    return data


def _null_reasons(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with `null_reason` saying why its latency figures will be null in JSON (a NaN has no JSON form)."""
    if any(isinstance(x, float) and math.isnan(x) for x in data.get("latency", {}).values()):
        where = " in at least one replication" if data.get("completed") else ""
        data["null_reason"] = {"latency": f"no task completed{where}"}
    return data


def _crossover_lines(summary: Any, params: list[str]) -> list[str]:
    """'asyncio overtakes threads:4 at task.0.cpu=0.012 (t_total 3.2)' lines for a strategy × one-number grid."""
    from .curves import sweep_crossovers

    x, found = sweep_crossovers(summary, params)
    if x is None:
        return []
    return [str(c) for c in found] or [f"no strategy overtakes another in T_total as {x} grows"]


def _with_profile(workload: Workload, profile: MachineProfile, args: argparse.Namespace) -> Workload:
    """The workload on the profiled machine's overheads (for the strategy being run)."""
    if args.command == "compare":
        names = [x for x in args.strategies.split(",") if x.strip()]
        if len(names) != 1:
            # overheads depend on the strategy: compare then needs one machine per strategy
            raise ModelError("--machine-profile: with compare, give one strategy at a time or use validate")
        strategy = parse_strategy(names[0])
    else:
        strategy = parse_strategy(args.strategy) if args.strategy else workload.strategy
    return workload.evolve(machine=profile.machine_for(strategy, workload.machine))


def _calibrate(args: argparse.Namespace, out: Console) -> int:
    from .real.calibrate import calibrate

    if args.repeats < 1:
        raise ModelError(f"--repeats: must be >= 1 (got {args.repeats})")
    profile = calibrate(repeats=args.repeats, progress=lambda msg: out.print(f"[dim]measuring {msg}[/]"))
    profile.save(args.out)
    if args.json:
        print(_json.dumps(profile.model_dump()))
        return 0
    table = Table(title=f"machine profile: Python {profile.python} on {profile.platform}", title_justify="left")
    table.add_column("measurement")
    table.add_column("value", justify="right")
    table.add_row("CPU work rate (busy-loop iterations/s)", f"{profile.cpu_rate:.4g}")
    table.add_row("GIL switch interval", fmt_s(profile.switch_interval_s))
    for name, lp in profile.loops.items():
        table.add_row(f"{name}: cost per resumption", fmt_s(lp.loop_step_s))
        table.add_row(f"{name}: sleep overshoot", fmt_s(lp.sleep_overshoot_s))
        table.add_row(f"{name}: task creation", fmt_s(lp.task_create_s))
        table.add_row(f"{name}: timer floor (shortest honoured wait)", fmt_s(lp.timer_floor_s))
        table.add_row(f"{name}: timer granularity (waits rounded up to)", fmt_s(lp.timer_granularity_s))
    table.add_row("threads: time.sleep overshoot", fmt_s(profile.thread_sleep_overshoot_s))
    table.add_row("threads: hand-off", fmt_s(profile.thread_switch_s))
    table.add_row("processes: dispatch round trip", fmt_s(profile.process_dispatch_s))
    out.print(table)
    out.print(f"wrote {args.out}")
    return 0


def _validate(workload: Workload, profile: MachineProfile | None, args: argparse.Namespace, out: Console) -> int:
    from .real.calibrate import calibrate
    from .validate import check_scale, check_time_scale, choose_time_scale, validate

    names = [x.strip() for x in (args.strategies or args.strategy or str(workload.strategy)).split(",") if x.strip()]
    strategies = [parse_strategy(n) for n in names]
    if profile is None:
        if not args.json:
            out.print("[dim]no --machine-profile: calibrating this machine first[/]")
        profile = calibrate(repeats=1)

    def note(line: str, style: str) -> None:  # before the real runs: a bad scale can be stopped with Ctrl-C
        if args.json:
            print(line, file=sys.stderr)
        else:
            out.print(f"[{style}]{escape(line)}[/]")

    choice = None
    if args.time_scale == "auto":
        choice = choose_time_scale(workload, strategies, profile, loop=args.loop, seed=args.seed)
        scale, checks = choice.time_scale, list(choice.checks)
        note(choice.reason(), "dim" if choice.matches else "yellow")
    else:
        try:
            scale = float(args.time_scale)
        except ValueError:
            raise ModelError(f"--time-scale: must be a number or 'auto' (got {args.time_scale!r})") from None
        check_time_scale(workload, scale, profile.timer_floor_s(args.loop))
        checks = [check_scale(build_scenario(workload, seed=args.seed, strategy=st), profile, scale, loop=args.loop)
                  for st in strategies]
        for check in checks:
            if (warning := check.warning()) is not None:
                note(f"warning: {warning}", "yellow")
    args.time_scale = scale
    results = []
    for strategy, check in zip(strategies, checks, strict=True):
        v = validate(workload, strategy=strategy, seed=args.seed, time_scale=scale, profile=profile,
                     loop=args.loop, scale_check=check)
        results.append(v)
        if v.interrupted:
            break
    dicts = [_validation_dict(v, detail=args.detail) for v in results]
    if choice is not None:
        for d in dicts:
            d["time_scale_choice"] = choice.to_dict()
    payload = _json.dumps(dicts if len(dicts) > 1 else dicts[0])
    if args.out:
        write_atomic(args.out, payload + "\n")
    if args.json:
        print(payload)
        return 0
    table = Table(title=f"{workload.name}: predicted vs measured (time scale {args.time_scale:g}, seed {args.seed})",
                  title_justify="left")
    for col in ("strategy", "metric", "predicted", "measured", "error", "replayed", "replay error"):
        table.add_column(col, justify="left" if col in ("strategy", "metric") else "right")
    for v in results:
        rows = [("T_total", "t_total", fmt_s), ("throughput/s", "throughput", _num),
                ("mean in flight", "concurrency_mean", _num), ("peak in flight", None, _num),
                ("latency p50", "latency_p50", fmt_s), ("latency p95", "latency_p95", fmt_s),
                ("latency p99", None, fmt_s)]
        for k, (label, key, fmt) in enumerate(rows):
            p, m, r = (_value(x, label) for x in (v.predicted, v.measured, v.replayed))
            err = v.error.get(key) if key else _rel(p, m)
            rerr = v.replay_error.get(key) if key else _rel(r, m)
            table.add_row(v.strategy if k == 0 else "", label, fmt(p), fmt(m), _pct(err), fmt(r), _pct(rerr))
        flat = [x.metrics() for x in (v.predicted, v.measured, v.replayed)]
        for label in ("completed", "failed", *_outcome_columns(flat)):
            p, m, r = (float(f[_OUTCOME_KEYS[label]]) for f in flat)
            fmt = _money if label == "cost" else _count
            # a task lost (or not) is an answer, not a timing: any difference is flagged
            exact = label in ("completed", "failed")
            table.add_row("", label, fmt(p), fmt(m), _diff(p, m, exact=exact), fmt(r), _diff(r, m, exact=exact))
        table.add_section()
    out.print(table)
    for v in results:
        if v.interrupted:
            out.print(f"[yellow]{v.strategy}: interrupted — the figures cover what was measured before Ctrl-C[/]")
        if v.errors_by_task:
            first = next(iter(v.errors_by_task.items()))
            out.print(f"[red]{v.strategy}: {len(v.errors_by_task)} task(s) failed; task {first[0]}: "
                      f"{escape(first[1])}[/]")
    return 0


def _diff(p: float, m: float, *, exact: bool) -> str:
    """predicted − measured (a count, or a cost); red when it differs at all (`exact`) or by more than
    max(1, 5%)."""
    d = p - m
    if not d:
        return "0"
    flag = "[red]" if (exact or abs(d) > max(1.0, 0.05 * m)) else ""
    return f"{flag}{d:+,.0f}" if float(d).is_integer() else f"{flag}{d:+.3g}"


def _value(r: Result, label: str) -> float:
    return {"T_total": r.t_total, "throughput/s": r.throughput, "mean in flight": r.concurrency.mean,
            "peak in flight": float(r.concurrency.peak), "latency p50": r.latency.p50,
            "latency p95": r.latency.p95, "latency p99": r.latency.p99}[label]


def _rel(p: float, m: float) -> float:
    return (p - m) / m if m else math.nan


def _pct(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "-"
    flag = "[red]" if abs(x) > 0.05 else ""
    return f"{flag}{x * 100:+.1f}%"


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


def _pm(value: float, half: float | None, fmt: Any = fmt_s) -> str:
    """A figure, ± its 95% half-width when it has one (a mean over replications)."""
    text = fmt(value)
    return f"{text} ± {fmt(half)}" if half is not None and not math.isnan(half) else text


def _num(value: float) -> str:
    return f"{value:.3g}"


def _count(value: float) -> str:
    """A task count: 2,000, or 169.7 for a mean over replications."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _money(value: float) -> str:
    return f"{value:,.2f}" if abs(value) >= 100 else f"{value:.4g}"


def _print_run(run: SavedRun, workload: Workload, out: Console) -> None:
    r = run.result
    reps = f", {run.replications} replications (mean ± 95% CI)" if run.replications is not None else ""
    out.print(f"[bold]{r.model}[/] under [bold]{r.strategy}[/], seed {r.seed}{reps}")
    if workload.description:
        out.print(workload.description.strip())
    c, split = r.concurrency, r.time_split
    lost = r.tasks - r.completed
    tasks = f"{_count(r.completed)} completed, {_count(r.failed)} failed of {_count(r.tasks)}"
    latency = "  ".join(f"{k} {_pm(getattr(r.latency, k), run.half('latency', k))}"
                        for k in ("mean", "p50", "p95", "p99", "max"))
    rows = [
        ("tasks", f"[red]{tasks} — {lost / r.tasks:.1%} of the work lost[/]" if lost > 0 else tasks),
        ("T_total", _pm(r.t_total, run.half("t_total"))),
        ("goodput", _pm(r.goodput, run.half("goodput"), fmt=_num) + " tasks/s completed"
         + (f" (throughput {_pm(r.throughput, run.half('throughput'), fmt=_num)}/s counts the failed too)"
            if lost > 0 else "")),
        ("latency", latency),
        ("in flight", f"mean {_pm(c.mean, run.half('concurrency', 'mean'), fmt=_num)}  peak {c.peak:g}"),
        ("  of which", "  ".join(f"{state} {value:.3g}" for state, value in c.by_state().items())),
        ("time per task", f"CPU {fmt_s(split.task)}  waiting {fmt_s(split.wait)}  "
                          f"throttled {fmt_s(split.throttled)}  queued {fmt_s(split.queue)}"),
    ]
    if r.cost is not None:
        cost = r.cost
        rows.append(("cost", f"{_pm(cost.total, run.half('cost', 'total'), fmt=_money)} (usage {_money(cost.usage)}, "
                             f"capacity {_money(cost.capacity)}; wasted on failed attempts {_money(cost.wasted)})"))
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for k, v in rows:
        table.add_row(k, v)
    out.print(table)
    res = Table(title="resources", title_justify="left")
    for col in ("resource", "capacity", "utilization", "mean busy", "mean wait/task", "mean queue"):
        res.add_column(col, justify="left" if col == "resource" else "right")
    for resource, stats in r.resources.items():
        util = "-" if stats.utilization is None else f"{stats.utilization:.1%}"
        res.add_row(str(resource), "∞" if stats.capacity is None else f"{stats.capacity:g}", util,
                    f"{stats.mean_busy:.3g}", fmt_s(stats.mean_wait), f"{stats.mean_queue:.3g}")
    out.print(res)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
