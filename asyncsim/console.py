"""What the command line prints: rich tables and plain sentences for runs, comparisons, sweeps, plans,
validations and machine profiles. Nothing here computes a figure; it shows the ones it is given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ._format import fmt_ci, fmt_count, fmt_money, fmt_num, fmt_s
from ._saved import SavedRun
from .bounds import Bound
from .curves import sweep_crossovers
from .plan import PlanResult
from .profile import MachineProfile
from .ranking import best_point, complete, speedups
from .results import Result
from .steady import Steady
from .validate import Validation

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["OUTCOME_KEYS", "diff", "marked", "outcome_cells", "outcome_columns", "print_calibration", "print_compare",
           "print_limits", "print_lost_bounds", "print_plan", "print_run", "print_sweep", "print_validations",
           "steady_line"]


def print_run(run: SavedRun, description: str | None, out: Console) -> None:
    r = run.result
    reps = f", {run.replications} replications (mean ± 95% CI)" if run.replications is not None else ""
    out.print(f"[bold]{r.model}[/] under [bold]{r.strategy}[/], seed {r.seed}{reps}")
    if description:
        out.print(description.strip())
    c, split = r.concurrency, r.time_split
    lost = r.tasks - r.completed
    tasks = f"{fmt_count(r.completed)} completed, {fmt_count(r.failed)} failed of {fmt_count(r.tasks)}"
    latency = "  ".join(f"{k} {fmt_ci(getattr(r.latency, k), run.half('latency', k))}"
                        for k in ("mean", "p50", "p95", "p99", "max"))
    rows = [
        ("tasks", f"[red]{tasks} — {lost / r.tasks:.1%} of the work lost[/]" if lost > 0 else tasks),
        ("T_total", fmt_ci(r.t_total, run.half("t_total"))
         + (f" (the process pool's start-up, {fmt_s(r.pool_startup_s)}, included)" if r.pool_startup_s else "")),
        ("goodput", fmt_ci(r.goodput, run.half("goodput"), fmt=fmt_num) + " tasks/s completed"
         + (f" (throughput {fmt_ci(r.throughput, run.half('throughput'), fmt=fmt_num)}/s counts the failed too)"
            if lost > 0 else "")),
        ("latency", latency),
        ("in flight", f"mean {fmt_ci(c.mean, run.half('concurrency', 'mean'), fmt=fmt_num)}  peak {c.peak:g}"),
        ("  of which", "  ".join(f"{state} {value:.3g}" for state, value in c.by_state().items())),
        ("time per task", f"CPU {fmt_s(split.task)}  waiting {fmt_s(split.wait)}  "
                          f"throttled {fmt_s(split.throttled)}  queued {fmt_s(split.queue)}"),
    ]
    if r.cost is not None:
        cost = r.cost
        total = fmt_ci(cost.total, run.half("cost", "total"), fmt=fmt_money)
        rows.append(("cost", f"{total} (usage {fmt_money(cost.usage)}, capacity {fmt_money(cost.capacity)}; "
                             f"wasted on failed attempts {fmt_money(cost.wasted)})"))
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


def print_limits(result: Result, limits: list[Bound], out: Console, *, whole: bool = False) -> None:
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


def print_lost_bounds(run: Result, limits: list[Bound], done: list[Bound], out: Console) -> None:
    """When work was lost: say that the bounds of all the work no longer apply, and give those of the work done."""
    if not done:
        return
    below = run.t_total < limits[0].seconds * (1 - 1e-9)
    what = (f"T_total {fmt_s(run.t_total)} is below the {fmt_s(limits[0].seconds)} that all the work needs under "
            f"{limits[0].name}, because" if below else "the bounds above count work that was never done:")
    out.print(f"[red]{what} {run.lost:,} of {run.tasks:,} tasks did not complete (their remaining work was never "
              f"done); bounds of the work of the {run.completed:,} that completed: {done[0].name} ≥ "
              f"{fmt_s(done[0].seconds)} ({done[0].detail})[/]")


def steady_line(steady: Steady) -> str:
    """A run's steady-state verdict, red when there is no steady state to report."""
    if steady.stable:
        return steady.summary()
    return f"[red]{steady.summary()}[/]" if steady.overloaded else f"[yellow]{steady.summary()}[/]"


def outcome_columns(rows: Any) -> tuple[str, ...]:
    """The columns a table of these runs (metrics, or summary rows) needs beyond completed and failed: 429s
    and retries where services were called, cost where anything was billed."""
    def seen(key: str) -> bool:
        return any(float(r[f"{key}_mean"] if f"{key}_mean" in r else r[key]) > 0 for r in rows)

    return (("429s", "retries") if seen("requests") else ()) + (("cost",) if seen("cost") else ())


OUTCOME_KEYS = {"completed": "completed", "failed": "failed", "429s": "rate_limited", "retries": "retries",
                 "cost": "cost"}


def outcome_cells(metrics: Any, extra: tuple[str, ...], half: Any = None) -> list[str]:
    """completed, failed and `extra` (429s, retries, cost) of one run's metrics or a summary row (`_mean`)."""
    cells = []
    for col in ("completed", "failed", *extra):
        key = OUTCOME_KEYS[col]
        value = float(metrics[f"{key}_mean"] if f"{key}_mean" in metrics else metrics[key])
        text = fmt_money(value) if col == "cost" else fmt_count(value)
        cells.append(f"[red]{text}[/]" if col == "failed" and value > 0 else text)
    return cells


def marked(label: str, entry: Any) -> str:
    """A row label, marked ⚠ when its run loses work (rankings never prefer it; a sentence says how much)."""
    return label if complete(entry) else f"{label} [red]⚠[/]"


def crossover_lines(summary: Any, params: list[str]) -> list[str]:
    """'asyncio overtakes threads:4 at task.0.cpu=0.012 (t_total 3.2)' lines for a strategy × one-number grid."""
    x, found = sweep_crossovers(summary, params)
    if x is None:
        return []
    return [str(c) for c in found] or [f"no strategy overtakes another in T_total as {x} grows"]


_OBJECTIVE_WORDS = {"t_total": "finishes soonest", "goodput": "has the highest goodput", "cost": "costs least",
                    "smallest": "is the smallest setting"}


def print_plan(result: PlanResult, out: Console, *, confidence: float, max_rate: bool, floor: str | None) -> None:
    """The answer in words, how the range was searched, and the curve it walked with the lost work of each point
    (`floor`: why no setting can meet a deadline, when the work itself cannot be done that fast)."""
    goal = " and ".join(str(s) + (" (no lost work)" if s.implicit else "") for s in result.slos)
    if result.answer is None:
        closest = next(p for p in result.curve if p.param == result.at)
        out.print(f"[red]no setting of {result.path} in the range meets {goal}[/]; the closest, {closest.value}, "
                  f"misses {result.binding} by {-min(result.margin.values()):.1%}")
        if floor:
            out.print(floor)
    else:
        point = result.point
        assert point is not None  # an answer is a point of the curve
        what = _OBJECTIVE_WORDS[result.objective] if not max_rate else "is the highest rate"
        within = result.tolerance and not max_rate and result.objective != "smallest"
        among = f" (the smallest within {result.tolerance:.0%} of the best)" if within else ""
        margins = ", ".join(f"{k}: {v:.1%} slack" for k, v in result.margin.items())
        out.print(f"[bold]{result.path} = {result.value}[/] {what}{among} among the settings that meet {goal} "
                  f"with {confidence:.0%} confidence: T_total {fmt_s(point.mean['t_total'])}, "
                  f"{fmt_count(point.mean['completed'])} tasks completed ({margins}; binding: {result.binding})")
        if result.cost is not None:
            out.print(f"cost of the setting: {result.cost:g}")
    if result.adaptive:
        out.print(f"[dim]searched {result.method}: {result.evaluations} settings, {result.runs} runs in all "
                  f"(from {result.replications} each, more while a decision was open)[/]")
    else:
        out.print(f"[dim]searched {result.method}: {result.evaluations} settings × {result.replications} runs[/]")
    table = Table(title="the curve it walked", title_justify="left")
    table.add_column(result.path)
    for col in ("completed", "failed", "T_total"):
        table.add_column(col, justify="right")
    shown = [s for s in result.slos if s.key not in ("failed", "t_total")]
    for slo in shown:
        table.add_column(f"{slo.metric} (mean, bound)", justify="right")
    table.add_column("meets", justify="center")
    if result.adaptive:
        table.add_column("runs", justify="right")
    for p in result.curve:
        cells = [f"{p.mean[s.key]:.4g} ({(p.high if s.upper else p.low)[s.key]:.4g})" for s in shown]
        failed = fmt_count(p.mean["failed"])
        table.add_row(str(p.value), fmt_count(p.mean["completed"]), f"[red]{failed}[/]" if p.mean["failed"] else failed,
                      fmt_s(p.mean["t_total"]), *cells,
                      "[bold]answer[/]" if p.param == result.answer else ("yes" if p.met else "no")
                      + (" [red](unstable)[/]" if p.mean["overloaded"] else ""),
                      *([str(p.replications) + ("" if p.stopped.startswith("settled") else " [yellow](max)[/]")]
                        if result.adaptive else []))
    out.print(table)


def print_compare(runs: Sequence[Result], title: str, out: Console) -> None:
    """Two tables (the outcome of each strategy, and what its tasks in flight were doing), then the speed-up
    sentences among the strategies that complete every task, and each unstable run's verdict."""
    table = Table(title=title, title_justify="left")
    flight = Table(title="tasks in flight (time-averaged) and what they were doing", title_justify="left")
    extra = outcome_columns([run.metrics() for run in runs])
    for col in ("strategy", "completed", "failed", *extra, "T_total", "goodput/s", "p50", "p95", "p99"):
        table.add_column(col, justify="left" if col == "strategy" else "right")
    for col in ("strategy", "in flight", "peak", "computing", "waiting", "throttled", "queued"):
        flight.add_column(col, justify="left" if col == "strategy" else "right")
    for run in runs:
        c, lat = run.concurrency, run.latency
        unstable = "" if run.steady is None or run.steady.stable else " [red]unstable[/]"
        table.add_row(marked(run.strategy, run) + unstable, *outcome_cells(run.metrics(), extra),
                      fmt_s(run.t_total), f"{run.goodput:.3g}", fmt_s(lat.p50), fmt_s(lat.p95), fmt_s(lat.p99))
        flight.add_row(run.strategy, f"{c.mean:.3g}", str(c.peak),
                       *(f"{getattr(c, s):.3g}" for s in ("computing", "waiting", "throttled", "queued")))
    out.print(table)
    out.print(flight)
    for line in speedups(runs):
        out.print(line)
    for run in runs:
        if run.steady is not None and not run.steady.stable:
            out.print(f"{run.strategy}: {steady_line(run.steady)}")


def print_sweep(summary: pd.DataFrame, params: list[str], title: str, out: Console) -> None:
    """A sweep summary's table (lossy and unstable points marked), its best point, and its crossovers."""
    table = Table(title=title, title_justify="left")
    rows = [row for _, row in summary.iterrows()]
    extra = outcome_columns(rows)
    adaptive = "stopped" in summary.columns
    for col in (*params, "completed", "failed", *extra, "T_total", "goodput/s", "p95", "in flight",
                *(["runs"] if adaptive else [])):
        table.add_column(col, justify="left" if col in params else "right")
    for row in rows:
        def pm(metric: str, fmt: Any = fmt_s, row: Any = row) -> str:
            return fmt_ci(row[f"{metric}_mean"], row[f"{metric}_ci95"], fmt)

        labels = [str(row[p]) for p in params]
        labels[0] = marked(labels[0], row) + (" [red]unstable[/]" if row.get("overloaded_mean", 0) > 0 else "")
        runs = [f"{row['replications']}" + (" [yellow](max)[/]" if str(row["stopped"]).startswith("the maximum")
                                            else "")] if adaptive else []
        table.add_row(*labels, *outcome_cells(row, extra), pm("t_total"), pm("goodput", fmt_num),
                      pm("latency_p95"), pm("concurrency_mean", fmt_num), *runs)
    out.print(table)
    out.print(best_point(rows, params))
    for line in crossover_lines(summary, params):
        out.print(line)


def print_calibration(profile: MachineProfile, out: Console) -> None:
    """A machine profile, one measurement per row."""
    table = Table(title=f"machine profile: Python {profile.python} on {profile.platform}", title_justify="left")
    table.add_column("measurement")
    table.add_column("value", justify="right")
    table.add_row("CPU work rate (busy-loop iterations/s)", f"{profile.cpu_rate:.4g}")
    table.add_row("GIL switch interval", fmt_s(profile.switch_interval_s))
    for name, lp in profile.loops.items():
        table.add_row(f"{name}: cost per resumption", fmt_s(lp.loop_step_s))
        table.add_row(f"{name}: sleep overshoot", fmt_s(lp.sleep_overshoot_s))
        table.add_row(f"{name}: task creation", fmt_s(lp.task_create_s))
        if lp.loop_block_s is not None:
            table.add_row(f"{name}: a first step that waits at its limit", fmt_s(lp.loop_block_s))
        if lp.semaphore_scan_s:
            table.add_row(f"{name}: a semaphore's release, per woken waiter it walks past", fmt_s(lp.semaphore_scan_s))
        table.add_row(f"{name}: timer floor (shortest honoured wait)", fmt_s(lp.timer_floor_s))
        table.add_row(f"{name}: timer granularity (waits rounded up to)", fmt_s(lp.timer_granularity_s))
    table.add_row("threads: time.sleep overshoot", fmt_s(profile.thread_sleep_overshoot_s))
    table.add_row("threads: the GIL's hand-off to a thread that was asleep", fmt_s(profile.thread_switch_s))
    if profile.thread_switch_idle_s is not None:
        table.add_row(f"threads: the same after {fmt_s(profile.thread_idle_after_s)} without a switch (fitted), "
                      "its core idle", fmt_s(profile.thread_switch_idle_s))
    table.add_row("threads: start", fmt_s(profile.thread_start_s))
    table.add_row("threads: an executor worker's turnaround between jobs", fmt_s(profile.thread_turnaround_s))
    table.add_row("threads: a pool worker's turnaround between tasks (threads:N)",
                  fmt_s(profile.thread_task_turnaround_s))
    table.add_row("threads: the loop's submit (run_in_executor) and result handle, per job",
                  f"{fmt_s(profile.thread_submit_s)} + {fmt_s(profile.thread_return_s)}")
    table.add_row("threads: the idle loop's wake-up by a worker's result", fmt_s(profile.loop_wake_s))
    table.add_row("threads: the loop's self-pipe read, per iteration that finds results", fmt_s(profile.loop_read_s))
    table.add_row("threads: the loop loses a worker's result race after idling",
                  fmt_s(profile.loop_race_idle_s) if profile.loop_race_idle_s else "never")
    if profile.loop_race_wins is not None:
        table.add_row("threads: the share of those races the loop wins after a short idle",
                      f"{profile.loop_race_wins:.0%}")
    table.add_row("processes: dispatch round trip", fmt_s(profile.process_dispatch_s))
    if profile.process_turnaround_s is not None:
        table.add_row("processes: a worker's turnaround between queued jobs", fmt_s(profile.process_turnaround_s))
    table.add_row("processes: starting a pool, per worker", fmt_s(profile.process_start_s))
    table.add_row("processes: an idle worker's wake-up while another worker computes",
                  fmt_s(profile.process_wake_busy_s))
    table.add_row("processes: the loop's wake-up, late while a pool keeps every core busy", fmt_s(profile.busy_wake_s))
    table.add_row("cores: load-balancing tick (an idle core takes a waiting thread)", fmt_s(profile.core_balance_s))
    table.add_row("cpu: the spread of the same work's time (coefficient of variation)", f"{profile.cpu_jitter_cv:.1%}")
    if profile.process_submit_s is not None and profile.process_return_s is not None:
        table.add_row("processes: offload from a loop, submit / return",
                      f"{fmt_s(profile.process_submit_s)} / {fmt_s(profile.process_return_s)}")
    out.print(table)


def print_validations(results: Sequence[Validation], title: str, out: Console) -> None:
    """Predicted, measured and replayed figures per strategy with their errors (red beyond 5%), then the lost
    work (any difference in completed or failed is red), then interruptions and task errors."""
    table = Table(title=title, title_justify="left")
    for col in ("strategy", "metric", "predicted", "measured", "error", "replayed", "replay error"):
        table.add_column(col, justify="left" if col in ("strategy", "metric") else "right")
    for v in results:
        rows = [("T_total", "t_total", fmt_s), ("throughput/s", "throughput", fmt_num),
                ("mean in flight", "concurrency_mean", fmt_num), ("peak in flight", None, fmt_num),
                ("latency p50", "latency_p50", fmt_s), ("latency p95", "latency_p95", fmt_s),
                ("latency p99", None, fmt_s)]
        for k, (label, key, fmt) in enumerate(rows):
            p, m, r = (_value(x, label) for x in (v.predicted, v.measured, v.replayed))
            err = v.error.get(key) if key else _rel(p, m)
            rerr = v.replay_error.get(key) if key else _rel(r, m)
            table.add_row(v.strategy if k == 0 else "", label, fmt(p), fmt(m), _pct(err), fmt(r), _pct(rerr))
        if v.measured.pool_startup_s is not None:  # inside T_total, as in a user's wall clock
            p, m, r = (x.pool_startup_s or 0.0 for x in (v.predicted, v.measured, v.replayed))
            table.add_row("", "pool start-up", fmt_s(p), fmt_s(m), _pct(_rel(p, m)), fmt_s(r), _pct(_rel(r, m)))
        flat = [x.metrics() for x in (v.predicted, v.measured, v.replayed)]
        for label in ("completed", "failed", *outcome_columns(flat)):
            p, m, r = (float(f[OUTCOME_KEYS[label]]) for f in flat)
            fmt = fmt_money if label == "cost" else fmt_count
            # a task lost (or not) is an answer, not a timing: any difference is flagged
            exact = label in ("completed", "failed")
            table.add_row("", label, fmt(p), fmt(m), diff(p, m, exact=exact), fmt(r), diff(r, m, exact=exact))
        table.add_section()
    out.print(table)
    for v in results:
        if not v.steady:
            assert v.cpu_speed is not None  # a run without CPU is steady
            out.print(f"[yellow]{v.strategy}: the CPU steps ran {abs(v.cpu_speed - 1):.0%} "
                      f"{'faster' if v.cpu_speed > 1 else 'slower'} than the rate measured before the run: the "
                      f"machine's speed moved, and the nominal error carries it (the replay does not)[/]")
        if v.interrupted:
            out.print(f"[yellow]{v.strategy}: interrupted — the figures cover what was measured before Ctrl-C[/]")
        if v.errors_by_task:
            first = next(iter(v.errors_by_task.items()))
            out.print(f"[red]{v.strategy}: {len(v.errors_by_task)} task(s) failed; task {first[0]}: "
                      f"{escape(first[1])}[/]")


def diff(p: float, m: float, *, exact: bool) -> str:
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
