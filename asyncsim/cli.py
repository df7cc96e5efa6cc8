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

from . import _json, console
from ._format import fmt_s
from ._io import write_atomic
from ._saved import SavedRun
from ._version import __version__
from .api import compare, fast_refusal, replicate, replicate_until, simulate
from .bounds import Bound, bounds
from .errors import AsyncSimError, ModelError
from .profile import MachineProfile
from .real.http import CLIENTS as HTTP_CLIENTS
from .results import Result
from .scenario import build_scenario
from .services import client_profiles
from .sim.fast import ENGINES
from .spec import Machine, Workload, load, read_yaml
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
    run.add_argument("--replications", "-r", type=int, default=1, help="independent runs (mean and 95%% CI; the "
                                                                      "first round, with --precision)")
    _adaptive(run)
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
    val.add_argument("--client", choices=HTTP_CLIENTS,
                     help="run the tasks with this REAL client library against `asyncsim serve` (real seconds; "
                          "needs pip install 'asyncsim[clients]') and compare with the prediction, which uses the "
                          "library's CPU per request measured first: openai (the package, its own retries), httpx "
                          "or aiohttp (a retry loop following the model's retry rules), cookbook (the OpenAI "
                          "cookbook's parallel processor, with its limiter and pause)")
    val.add_argument("--out", metavar="FILE", help="also save the results as JSON (written atomically, kept if "
                                                  "the run is interrupted)")
    _common(val)

    sw = sub.add_parser("sweep", help="simulate a grid of model variants (or run a program in the twin over a "
                                      "grid of its knobs), each with replications")
    sw.add_argument("model", nargs="?", help="a model file (YAML); or give --program")
    sw.add_argument("--program", metavar="FILE",
                    help="instead of a model: an asyncio program run in the twin at each point (--set env.NAME=... "
                         "and services.NAME.FIELD=...), one run after another")
    sw.add_argument("--services", metavar="FILE", help="with --program: the services file its hosts are answered by")
    sw.add_argument("--set", dest="sets", action="append", required=True, metavar="PATH=VALUES",
                    help="vary a model field: strategy=asyncio:{1,2,4} or pools.db=5,10,20 (repeat for a grid)")
    sw.add_argument("--replications", "-r", type=int, default=1, help="independent runs per grid point (the "
                                                                     "first round, with --precision)")
    _adaptive(sw)
    _engine(sw)
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
    pl.add_argument("--replications", "-r", type=int, default=5, help="seeded runs per candidate (the first "
                                                                      "round, with --precision)")
    _adaptive(pl)
    _engine(pl)
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
    cal.add_argument("--client", choices=HTTP_CLIENTS,
                     help="instead: measure this client library's CPU per request against `asyncsim serve`")

    for p in (run, cmp, val):
        p.add_argument("--machine-profile", metavar="FILE",
                       help="a profile from `asyncsim calibrate`: simulate with this machine's overheads")
        p.add_argument("--detail", action="store_true",
                       help="with --json/--out: add per-task latencies and the concurrency series under 'detail' "
                            "(for `asyncsim report`; grows with the task count)")

    srv = sub.add_parser("serve", help="an OpenAI-compatible API on 127.0.0.1 that behaves as the model's services "
                                       "say (needs pip install 'asyncsim[serve]')")
    srv.add_argument("model", help="a model file (YAML) with services")
    srv.add_argument("--port", type=int, default=8000, help="port to listen on (0: any free one, printed)")
    srv.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    srv.add_argument("--allow-remote", action="store_true", help="allow a host that is not loopback")
    srv.add_argument("--service", help="the service a request's 'model' that names no service goes to "
                                       "(default: the only service)")
    srv.add_argument("--time-scale", type=_finite, default=1.0,
                     help="real seconds per model second (0.1: ten times faster, rates ten times higher)")
    srv.add_argument("--seed", type=int, default=0, help="seed of the server's draws (latency, tokens, failures)")
    srv.add_argument("--log", metavar="FILE", help="append one JSON line per request")
    srv.add_argument("--duration", type=_finite, metavar="SECONDS", help="stop after this many seconds")
    srv.add_argument("--max-requests", type=int, metavar="N", help="stop after answering N requests")

    tw = sub.add_parser("twin", help="run your own asyncio program in virtual time, charging its real CPU, and "
                                     "report it as a run (asyncsim twin PROGRAM.py -- ARGS)")
    tw.add_argument("program", help="a Python program that runs its work with asyncio.run(...); its own "
                                    "arguments follow a --")
    tw.add_argument("--services", metavar="FILE",
                    help="a YAML file whose services declare their host: the program's requests to those hosts are "
                         "answered by the simulated APIs (any other host fails at once)")
    tw.add_argument("--set", dest="sets", action="append", default=[], metavar="PATH=VALUE",
                    help="services.NAME.FIELD=VALUE changes a simulated API (services.llm.rate_limit.rpm=200); "
                         "env.NAME=VALUE sets the program's environment (its own knobs); repeatable")
    tw.add_argument("--cpu-scale", type=_finite, default=1.0,
                    help="× each callback's measured CPU (0.5: a machine twice as fast)")
    tw.add_argument("--out", metavar="FILE", help="also save the run as JSON (for `asyncsim report`)")
    tw.add_argument("--machine-profile", metavar="FILE",
                    help="a profile from `asyncsim calibrate`: process pools start, dispatch and return at its cost, "
                         "the program's timers wake on select()'s millisecond grid")
    _common(tw)

    rc = sub.add_parser("record", help="run your asyncio program for real and record its tasks and HTTP calls "
                                       "(asyncsim record --out DIR -- python PROGRAM.py ARGS)")
    rc.add_argument("--out", "-o", default="run", metavar="DIR",
                    help="the folder for calls.jsonl (a call log `asyncsim fit` reads) and run.json (for `report`)")
    rc.add_argument("--json", action="store_true", help="print the run as JSON instead of a table")

    ck = sub.add_parser("check", help="simulate a fitted model (or run the recorded program in the twin with fitted "
                                      "services) and compare it with the recording; exit 1 beyond the tolerance")
    ck.add_argument("services", help="a model (asyncsim fit DIR) or a services file (asyncsim fit calls.jsonl)")
    ck.add_argument("--against", required=True, metavar="DIR", help="the recording's folder (asyncsim record --out)")
    ck.add_argument("--tolerance", type=_finite, default=0.10, help="largest relative error on T_total (0.10)")
    ck.add_argument("--replications", "-r", type=int, default=10, metavar="R",
                    help="a model is simulated R times and their means compared (10)")
    _common(ck)

    ft = sub.add_parser("fit", help="fit a model from a recording (asyncsim record's folder: arrivals, task steps, "
                                    "locks, services), or services from an LLM call log (latency as ttft + tpot × "
                                    "tokens, tokens, failures, the rate limit it logged); writes commented YAML and a "
                                    "report with the fit checked")
    ft.add_argument("log", help="a recording's folder (asyncsim record --out DIR), or a call log: JSON lines, one "
                                "per request attempt (asyncsim serve --log writes one)")
    ft.add_argument("--min-wait", type=_finite, default=0.001, metavar="S",
                    help="a recording's gaps shorter than this between a task's turns on the loop are not waits")
    ft.add_argument("--format", default="openai-log", choices=("openai-log", "otlp"),
                    help="a call log's format: openai-log (JSON lines), otlp (OpenTelemetry spans, JSON export)")
    ft.add_argument("--out", "-o", required=True, metavar="FILE", help="the services file to write (YAML)")
    ft.add_argument("--report", metavar="DIR", help="the fit report's folder (default: reports/fit-<name>)")

    rep = sub.add_parser("report", help="turn a saved run / compare / sweep / validate output into a report")
    rep.add_argument("results", help="run/compare --json output, sweep --out table, or validate --out/--json output")
    rep.add_argument("--out", "-o", required=True, metavar="DIR", help="folder for report.md and its figures")
    return parser


def _adaptive(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", type=_percent, metavar="P",
                   help="replicate until the 95%% CI half-width is within P of the mean (e.g. 2%%; plan: and until "
                        "each SLO decision is settled), doubling the runs each round")
    p.add_argument("--max-replications", type=int, metavar="N",
                   help="the most replications adaptive replication runs (64; plan: alone, it replicates until "
                        "each SLO decision is settled)")


def _percent(text: str) -> float:
    """An argparse type: a fraction, written 0.02 or 2%."""
    value = _finite(text[:-1]) / 100 if text.endswith("%") else _finite(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 100% (got {text})")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _engine(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", choices=ENGINES, default="auto",
                   help="auto: the fast path (a recursion over FIFO queues, no events) where it gives the "
                        "discrete-event engine's results exactly, else the engine; des or fast: that one")


def _run_limits(p: argparse.ArgumentParser) -> None:
    _engine(p)
    p.add_argument("--summary-only", action="store_true",
                   help="keep no per-step trace: fold the records into the figures as they are made (the same "
                        "numbers, a fraction of the memory of a run of millions of tasks; not with --detail, "
                        "parallel branches or pipelines)")
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
    if args.summary_only and args.detail:
        raise ModelError("--summary-only keeps no trace, and --detail is made from it: give one of them")
    return {"max_sim_time": args.max_sim_time, "max_events": args.max_events, "engine": args.engine,
            "summary_only": args.summary_only}


def _engine_note(engine: str, settings: Sequence[tuple[str, Workload, Any]]) -> str:
    """Which engine computed the runs of `settings` (label, model, strategy or None), and why not the fast path
    where it did not."""
    if engine == "des":
        return "engine: discrete-event (--engine des)"
    refused = [(label, why) for label, w, strategy in settings
               if (why := fast_refusal(w, strategy=strategy)) is not None]
    if not refused:
        return "engine: fast path (exact for this model: FIFO queues, no CPU contention)" if len(settings) == 1 \
            else f"engine: fast path at all {len(settings)} settings"
    label, why = refused[0]
    if len(settings) == 1:
        return f"engine: discrete-event (the fast path does not apply: {why})"
    return (f"engine: fast path at {len(settings) - len(refused)} of {len(settings)} settings, discrete-event at "
            f"{len(refused)} (at {label}: {why})")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `asyncsim` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    program_args: list[str] = []
    if argv[:1] in (["twin"], ["record"]) and "--" in argv:  # the program's own arguments are not ours
        cut = argv.index("--")
        argv, program_args = argv[:cut], argv[cut + 1:]
    args = _parser().parse_args(argv)
    args.program_args = program_args
    # piped output gets a width that fits the tables instead of rich's 80-column default
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
    try:
        if args.command == "calibrate":
            return _calibrate(args, out)
        if args.command == "report":
            return _report(args, out)
        if args.command == "twin":
            return _twin(args, out)
        if args.command == "fit":
            return _fit(args, out)
        if args.command == "record":
            return _record(args, out)
        if args.command == "check":
            return _check(args, out)
        if args.command == "sweep" and args.program:
            return _sweep_program(args, out)
        if args.command == "sweep" and not args.model:
            raise ModelError("sweep: give a model file, or --program (an asyncio program run in the twin)")
        workload = load(args.model)  # validates the model before anything else (a sweep too)
        if args.command == "serve":
            return _serve(workload, args)
        if args.command == "sweep":
            return _sweep(args, out)
        if args.command == "plan":
            return _plan(args, out)
        profile = MachineProfile.read(args.machine_profile) if args.machine_profile else None
        if args.command == "validate":
            if args.client:
                return _validate_http(workload, args, out)
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


def _record(args: argparse.Namespace, out: Console) -> int:
    import contextlib

    from .record import record_program

    command = list(args.program_args)
    if command[:1] and Path(command[0]).name.startswith("python"):
        command = command[1:]  # `-- python prog.py ARGS`: the program runs in this interpreter
    if not command or command[0].startswith("-"):
        raise ModelError("record: give the program after --: asyncsim record --out DIR -- python PROGRAM.py ARGS")
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with quiet:
        result = record_program(command[0], command[1:], args.out)
    if args.json:
        print(_json.dumps(result.to_dict()))
        return 0
    console.print_run(SavedRun(result), f"{command[0]}, recorded into {args.out}/ (calls.jsonl, run.json)", out)
    return 0


def _check(args: argparse.Namespace, out: Console) -> int:
    from .record import COUNTS, check_model, check_run

    if not args.tolerance > 0:
        raise ModelError(f"--tolerance: must be > 0 (got {args.tolerance:g})")
    if args.replications < 1:
        raise ModelError(f"--replications: must be >= 1 (got {args.replications})")
    model = read_yaml(Path(args.services), "model or services file")
    if isinstance(model, dict) and any(k in model for k in ("task", "tasks", "stages")):
        found = check_model(load(args.services), args.against, seed=args.seed, replications=args.replications)
    else:
        found = check_run(args.services, args.against, seed=args.seed)
    within = abs(found.error) <= args.tolerance
    if args.json:
        print(_json.dumps({"error": found.error, "tolerance": args.tolerance, "within": within,
                           "figures": {k: {"recorded": r, found.how: p} for k, r, p in found.rows()}}))
    else:
        title = (f"the twin with {args.services}" if found.how == "twin"
                 else f"{args.services}, simulated (means of {len(found.runs)})")
        table = Table(title=f"{args.against}: recorded vs {title}")
        for col in ("figure", "recorded", found.how, "error"):
            table.add_column(col, justify="left" if col == "figure" else "right")
        for name, rec, pred in found.rows():
            seconds = name == "T_total" or name.startswith("latency")
            count = name in COUNTS
            show = fmt_s if seconds else (lambda x: f"{x:g}") if count else (lambda x: f"{x:.4g}")
            error = f"{pred - rec:+g}" if count or rec <= 0 else f"{pred / rec - 1:+.1%}"
            table.add_row(name, show(rec), show(pred), error)
        out.print(table)
        out.print(f"T_total {found.error:+.1%}: " + ("within" if within else "[red]beyond[/]")
                  + f" the tolerance of {args.tolerance:.0%}")
    return 0 if within else 1


def _fit(args: argparse.Namespace, out: Console) -> int:
    from .fitting import fit_model, fit_report, fit_service, model_report, read_calls, services_yaml
    from .record import check_model

    report_dir = args.report or Path("reports") / f"fit-{Path(args.out).stem}"
    if Path(args.log).is_dir():
        fitted = fit_model(args.log, name=Path(args.out).stem, min_wait=args.min_wait)
        write_atomic(args.out, fitted.yaml)
        check = check_model(load(args.out), args.log)
        report = model_report(fitted, check, args.log, report_dir, command=["asyncsim", *sys.argv[1:]])
        out.print(fitted.yaml.rstrip())
        out.print(f"simulated, the fitted model's T_total is {check.error:+.1%} from the recorded run's "
                  f"({check.predicted.t_total:.3g} s against {check.recorded.t_total:.3g} s)")
        out.print(f"wrote {args.out} and {report}")
        return 0
    calls = read_calls(args.log, args.format)
    names = list(dict.fromkeys(c.service for c in calls))
    fits = [fit_service(name, [c for c in calls if c.service == name]) for name in names]
    text = services_yaml(fits, Path(args.log).name)
    write_atomic(args.out, text)
    report = fit_report(fits, Path(args.log).name, report_dir, text, command=["asyncsim", *sys.argv[1:]])
    out.print(text.rstrip())
    out.print(f"wrote {args.out} and {report}")
    return 0


def _twin(args: argparse.Namespace, out: Console) -> int:
    import contextlib

    from . import twin
    from .sweep import parse_set

    sets = {}
    for text in args.sets:
        path, values = parse_set(text)
        if len(values) != 1:
            raise ModelError(f"--set {path}: a twin runs one setting (got {len(values)} values)")
        sets[path] = values[0]
    # with --json the program's own prints go to stderr, so stdout stays one JSON document
    quiet = contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext()
    with quiet:
        result = twin.run_program(args.program, args.program_args, cpu_scale=args.cpu_scale,
                                  services=args.services, seed=args.seed, sets=sets, machine=_twin_machine(args))
    data = result.to_dict()
    if args.out:
        write_atomic(args.out, _json.dumps(data))
    if args.json:
        print(_json.dumps(data))
        return 0
    console.print_run(SavedRun(result), f"{args.program} in virtual time (asyncsim twin)", out)
    return 0


def _serve(workload: Workload, args: argparse.Namespace) -> int:
    import asyncio

    try:
        import aiohttp  # noqa: F401 - an optional dependency: say how to get it
    except ImportError as exc:
        raise AsyncSimError("serve needs aiohttp: pip install 'asyncsim[serve]'") from exc
    from .serve import ServeOptions, serve

    if args.time_scale <= 0:
        raise ModelError(f"--time-scale: must be > 0 (got {args.time_scale})")
    options = ServeOptions(host=args.host, port=args.port, service=args.service, time_scale=args.time_scale,
                           seed=args.seed, log=Path(args.log) if args.log else None, duration=args.duration,
                           max_requests=args.max_requests, allow_remote=args.allow_remote)

    async def main() -> None:
        ready, bound = asyncio.Event(), list[int]()
        task = asyncio.create_task(serve(workload, options, ready=ready, bound=bound))
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            print(f"serving {', '.join(workload.services)} on http://{options.host}:{bound[0]}/v1 "
                  "(Ctrl-C stops)", file=sys.stderr, flush=True)
        await task

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0


def _clients(workload: Workload) -> dict[str, Any]:
    """Each service's client rules as the run used them (a named profile expanded, with its source; its CPU
    per request, from the model or a machine profile) and its server's behaviour, for `run --json`."""
    out = {}
    for name, svc in workload.services.items():
        profiles = client_profiles(svc.client) if svc.client else []
        out[name] = {"client": svc.client or "custom",
                     "source": " + ".join(p.source for p in profiles) if profiles else None,
                     "retry": svc.retry.model_dump(mode="json"), "timeout": svc.timeout,
                     "client_cpu": svc.client_cpu.model_dump(mode="json") if svc.client_cpu else None,
                     "server": svc.server.model_dump(mode="json")}
    return out


def _run(workload: Workload, args: argparse.Namespace, out: Console) -> int:
    if args.replications < 1:
        raise ModelError(f"--replications: must be >= 1 (got {args.replications})")
    strategy = parse_strategy(args.strategy) if args.strategy else None
    if args.precision is not None or args.max_replications is not None:
        most = args.max_replications or 64
        start = args.replications if args.replications > 1 else min(4, most)
        if most < start:
            raise ModelError(f"--max-replications: must be >= --replications ({start}), got {most}")
        summary = replicate_until(workload, precision=args.precision or 0.02, max_replications=most,
                                  replications=start, strategy=strategy, seed=args.seed, warmup=_warmup(args),
                                  **_limits(args))
        first, data = summary.runs[0], summary.to_dict()
        if not args.json:
            out.print(f"[dim]stopped: {summary.stopped}[/]")
    elif args.replications == 1:
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
    data["engine"] = first.engine
    data["bounds"] = {b.name: b.seconds for b in limits}
    data["binding"] = limits[0].name
    done: list[Bound] = []
    if first.lost:  # bounds of the work that was done: the run's T_total meets them, not those of all the work
        done = bounds(scenario, completed=first.completed_tasks)
        data["bounds_completed"] = {b.name: b.seconds for b in done}
    if args.json:
        if workload.services:
            data["clients"] = _clients(workload)
        print(_json.dumps(_null_reasons(data)))
    else:
        shown = SavedRun.from_dict(data)  # what the JSON holds (with replications, their means), as report reads it
        console.print_run(shown, workload.description, out)
        console.print_limits(shown.result, limits, out, whole="bounds_completed" in data)
        console.print_lost_bounds(first, limits, done, out)
        out.print(f"[dim]{_engine_note(args.engine, [('', workload, strategy)])}[/]")
        if shown.result.steady is not None:
            out.print(console.steady_line(shown.result.steady))
        elif args.warmup is not None:
            out.print("[dim]--warmup: batch arrivals (all at once) have no steady state; no warm-up dropped[/]")
    return 0


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
    console.print_compare(runs, f"{workload.name}: {runs[0].tasks} tasks, seed {args.seed}", out)
    return 0


def _sweep(args: argparse.Namespace, out: Console) -> int:
    from .sweep import build, grid, load_raw, parse_set, summarize, sweep

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
                      warmup=_warmup(args), precision=args.precision, max_replications=args.max_replications,
                      engine=args.engine)
    finally:
        bar.stop()
    summary = summarize(frame, params)
    if "stopped" in frame.attrs:
        summary["stopped"] = [frame.attrs["stopped"][i] for i in range(len(points))]
    if args.out:
        target = Path(args.out)
        summary_path = target.with_name(f"{target.stem}-summary.csv")
        write_atomic(summary_path, summary.to_csv(index=False))
    if args.json:
        print(_json.dumps(summary.to_dict(orient="records")))
        return 0
    reps = (f"{args.replications} replication(s)" if args.precision is None else
            f"replications until ±{args.precision:.1%} ({len(frame)} runs)")
    console.print_sweep(summary, params, f"{raw.get('name', args.model)}: {len(points)} grid points × {reps}, "
                        f"seed {args.seed}", out)
    settings = [(", ".join(f"{k}={v}" for k, v in p.items()), build(raw, p, base_dir=base_dir), None) for p in points]
    out.print(f"[dim]{_engine_note(args.engine, settings)}[/]")
    if args.out:
        out.print(f"wrote {args.out} ({len(frame)} runs) and {summary_path}")
    return 0


def _twin_machine(args: argparse.Namespace) -> Machine | None:
    """The machine costs a twin takes from `--machine-profile` (process pools', the loop's timers), None without
    one."""
    if not getattr(args, "machine_profile", None):
        return None
    # emulated_waits: the program's own timers (asyncio.sleep) are timers, woken on select()'s grid
    return MachineProfile.read(args.machine_profile).machine_for(parse_strategy("asyncio+processes:1"), Machine(),
                                                                 emulated_waits=True)


def _sweep_program(args: argparse.Namespace, out: Console) -> int:
    from . import twin
    from .sweep import grid, parse_set, summarize

    if args.model:
        raise ModelError("sweep: give a model file or --program, not both")
    if args.replications < 1:
        raise ModelError(f"--replications: must be >= 1 (got {args.replications})")
    sets = [parse_set(text) for text in args.sets]
    points = grid(sets)
    params = [path for path, _ in sets]
    bar = Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TextColumn("twin runs"),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), disable=args.json)
    job = bar.add_task("sweep", total=len(points) * args.replications)
    with bar:
        frame = twin.sweep_program(args.program, points, services=args.services, replications=args.replications,
                                   seed=args.seed, progress=lambda done, total: bar.update(job, completed=done))
    summary = summarize(frame, params)
    if args.out:
        write_atomic(args.out, frame.to_csv(index=False))
    if args.json:
        print(_json.dumps(summary.to_dict(orient="records")))
        return 0
    console.print_sweep(summary, params, f"{args.program} in the twin: {len(points)} grid points × "
                        f"{args.replications} replication(s), seed {args.seed}", out)
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
                               warmup=_warmup(args), precision=args.precision,
                               max_replications=args.max_replications, engine=args.engine)
    else:
        if not args.vary:
            raise ModelError("--vary: give the setting to search, e.g. --vary strategy=asyncio:1..512")
        vary = parse_vary(args.vary)
        result = plan(raw, vary=vary, slos=slos, replications=args.replications, seed=args.seed,
                      confidence=args.confidence, base_dir=base_dir, cost=args.cost, objective=args.objective,
                      tolerance=args.tolerance, allow_failures=args.allow_failures, warmup=_warmup(args),
                      precision=args.precision, max_replications=args.max_replications, engine=args.engine)
    if args.json:
        print(_json.dumps(result.to_dict(), default=str))
        return 0
    console.print_plan(result, out, confidence=args.confidence, max_rate=args.find == "max-rate",
                       floor=_floor_line(result, args, raw, base_dir) if result.answer is None else None)
    from .sweep import build

    settings = [(f"{result.path}={p.value}", build(raw, {result.path: p.value}, base_dir=base_dir), None)
                for p in result.curve]
    out.print(f"[dim]{_engine_note(args.engine, settings)}[/]")
    return 0


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
    return profile.with_clients(workload).evolve(machine=profile.machine_for(strategy, workload.machine))


def _calibrate(args: argparse.Namespace, out: Console) -> int:
    from .real.calibrate import calibrate

    if args.repeats < 1:
        raise ModelError(f"--repeats: must be >= 1 (got {args.repeats})")
    if args.client:
        from .real.http import library_of, measure_client_cpu

        per = sorted(measure_client_cpu(args.client) for _ in range(args.repeats))[args.repeats // 2]
        library = library_of(args.client)  # the cookbook processor sends with aiohttp
        saved = Path(args.out).exists()  # a machine profile to add the client to (run/compare apply it)
        if saved:
            profile = MachineProfile.read(args.out)
            profile.model_copy(update={"client_cpu_s": {**profile.client_cpu_s, library: per}}).save(args.out)
        if args.json:
            print(_json.dumps({"client": args.client, "library": library, "cpu_per_request_s": per}))
        else:
            out.print(f"{args.client}: {per * 1e3:.2f} ms of CPU per request on the calling thread (median of "
                      f"{args.repeats}); " + (f"added to {args.out} as {library}'s: --machine-profile applies it "
                      f"to services whose client profile uses {library}" if saved else
                      f"model it as client_cpu: {{before: {per / 2:.6f}, after: {per / 2:.6f}}}, or run "
                      f"`asyncsim calibrate` first and this again to keep it in the profile"))
        return 0
    profile = calibrate(repeats=args.repeats, progress=lambda msg: out.print(f"[dim]measuring {msg}[/]"))
    profile.save(args.out)
    if args.json:
        print(_json.dumps(profile.model_dump()))
        return 0
    console.print_calibration(profile, out)
    out.print(f"wrote {args.out}")
    return 0


def _validate_http(workload: Workload, args: argparse.Namespace, out: Console) -> int:
    from .validate import validate_http

    names = [x.strip() for x in (args.strategies or args.strategy or str(workload.strategy)).split(",") if x.strip()]
    if args.time_scale not in ("1", "1.0"):
        raise ModelError("--time-scale: a real client runs in real seconds (its back-off does not scale); "
                         "leave --time-scale at 1 with --client")
    results = [validate_http(workload, parse_strategy(n), client=args.client, seed=args.seed) for n in names]
    if args.json:
        print(_json.dumps([r.to_dict() for r in results] if len(results) > 1 else results[0].to_dict()))
        return 0
    table = Table(title=f"{workload.name}: predicted vs the real {args.client} client against asyncsim serve "
                        f"(client CPU {results[0].client_cpu_s * 1e3:.2f} ms per request)")
    for col in ("strategy", "T_total predicted", "measured", "error", "requests", "429s", "failed"):
        table.add_column(col, justify="right" if col != "strategy" else "left")
    for r in results:
        p, m = r.predicted, r.measured
        table.add_row(r.strategy, fmt_s(p.t_total), fmt_s(m.t_total), f"{r.error['t_total']:+.1%}",
                      f"{p.requests} / {m.requests}", f"{p.rate_limited} / {m.rate_limited}",
                      f"{p.failed} / {m.failed}")
    out.print(table)
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
    console.print_validations(results, f"{workload.name}: predicted vs measured (time scale {args.time_scale:g}, "
                                       f"seed {args.seed})", out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
