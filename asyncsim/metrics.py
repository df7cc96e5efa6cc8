"""Metrics as pure functions of a trace and its task table — one definition for simulated and real runs.

`compute_result` returns a `results.Result` whose parts are the typed statistics of `stats`; each task's
state at each moment comes from `states`. Definitions (also in the README):
* `t_total` = last task to finish (completed or failed) − first arrival; `throughput` = tasks finished
  (completed or failed) / t_total; `goodput` = tasks completed / t_total — the rate of useful work, which is
  what rankings and plans compare; `failed_fraction` = failed / tasks.
* latency of a task = completion − arrival, over completed tasks; percentiles use linear interpolation.
* a warm-up of W seconds (`warmup_s`, see `steady`) leaves the tasks arriving before W out of the latency
  figures and `time_split` (so the split still adds up to the mean latency), and makes `throughput` and
  `goodput` the tasks finishing in the window [max(W, first arrival), last finish] over its length; per class
  alike, over the class's own window. Everything else — `t_total`, counts, `deadline_missed`, concurrency,
  resources, services, stages, cost — covers the whole run.
* in flight = tasks arrived and not finished (a task that fails is in flight until it fails); its mean is
  time-weighted over [first arrival, last finish], which equals Σ (finish − arrival) / t_total over the
  finished tasks (Little's law with `throughput`); its peak counts departures before arrivals at ties.
* every moment of a task is in one state: computing (CPU on a thread), waiting (I/O, a service, a
  dispatch), throttled (waiting for rate-limit tokens, or backing off before a retry) or queued (for
  admission, the loop, the GIL, a core, an executor, a pool, a service slot or batch, a pipeline stage);
  with parallel branches the task's state is the first of computing > waiting > throttled > queued that any
  branch is in. `time_split` is the mean seconds per task in each state (they add up to the mean latency), and
  `concurrency.*_mean` are the totals over the finished tasks divided by t_total (they add up to the mean in
  flight).
* `cost` (models with prices, `services.Price`): usage (tokens and requests of attempts the server accepted)
  plus capacity (priced slots, instances and workers × T_total); `wasted` is the usage of accepted attempts
  that failed. Per service and per class too (a class pays for its own calls).
* a resource's `mean_wait` is the mean seconds per task spent queueing for it, `mean_queue` the
  time-averaged number queueing, `mean_busy` the time-averaged number of busy slots, `utilization` =
  mean_busy / capacity (null when unbounded).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .results import METRICS, Result, TaskData, flat_metrics
from .rules.calls import accepted
from .services import OK, OUTCOMES, Price
from .states import (
    COMPUTING,
    QUEUED,
    STATES,
    THROTTLED,
    WAITING,
    add_split,
    overlapping,
    peak_in_flight,
    state_segments,
    task_split,
)
from .stats import (
    ClassStats,
    Concurrency,
    Cost,
    Latency,
    ResourceStats,
    ServiceStats,
    StageStats,
    StatsTable,
    TimeSplit,
)
from .steady import Steady
from .trace import (
    ADMISSION,
    K_ADMIT,
    K_CALL,
    K_CPU,
    K_RESUME,
    K_STAGE,
    K_USE,
    CallTable,
    ResourceId,
    Trace,
)

# METRICS, STATES, Result, flat_metrics and state_segments live in `results` and `states`; they are named here
# too, where they were first, for code that imports them from metrics.
__all__ = ["METRICS", "STATES", "Fold", "Pricing", "Result", "compute_result", "flat_metrics", "service_metrics",
           "state_segments"]

_CORES = ResourceId("cores")


def compute_result(trace: Trace, arrival: np.ndarray, done: np.ndarray, task_type: np.ndarray,
                   failed: np.ndarray, *, model: str, strategy: str, seed: int | None,
                   capacities: dict[str, int | None], parallel_types: np.ndarray,
                   type_names: tuple[str, ...] = (), events: int = 0, calls: CallTable | None = None,
                   deadlines: tuple[float | None, ...] = (), pricing: Pricing | None = None,
                   warmup_s: float = 0.0, steady: Steady | None = None,
                   pool_startup_s: float | None = None, engine: str = "", fold: Fold | None = None) -> Result:
    """Compute every metric of a run from its trace and task table.

    Per-class figures are given when there is more than one task type or a type has a deadline
    (`deadlines[t]`, seconds after arrival). `capacities` gives each resource's slot count by its name
    (`pool:db`; None when unbounded); `parallel_types[t]` says whether tasks of type t have parallel branches
    (their states need the priority sweep); `pricing` gives `cost`; `warmup_s` (the run's clock) leaves the
    tasks arriving before it out of the latency figures, time split and throughput (see the module
    docstring); `steady` is the verdict to carry (`steady.steady_state`), `pool_startup_s` the process pool's
    start-up (inside t_total; None without a pool), `engine` what computed the run ("" for a real one). `fold`
    holds the records of a summary-only run, whose `trace` is empty (no task type may have parallel branches).

    Raises:
        ValueError: when a key of `capacities` is no resource's name.
    """
    n = int(arrival.size)
    finished = ~np.isnan(done)
    ok = finished & ~failed
    completed = int(ok.sum())
    t_first = float(np.nanmin(arrival)) if n else 0.0
    t_total = float(np.nanmax(done) - t_first) if finished.any() else 0.0
    kept = arrival >= warmup_s if warmup_s > 0 else np.ones(n, dtype=bool)
    latency = (done - arrival)[ok & kept]
    span = t_total if t_total > 0 else math.nan
    slots = {ResourceId.parse(name): capacity for name, capacity in capacities.items()}
    summary = fold is not None  # the records were folded as they were made, and not kept
    if fold is None:
        fold = Fold(n).feed(trace)
    resources = _resources(fold, trace.resources, arrival, done, slots, span, max(n, 1))
    peak = peak_in_flight(arrival, done)
    overlap = overlapping(parallel_types, task_type)
    split = task_split(trace, n, overlap) if overlap.any() else fold.split
    in_flight = float((done - arrival)[finished].sum() / span) if finished.any() and span == span else 0.0
    by_state = {name: float(split[code, finished].sum() / span) if in_flight else 0.0
                for code, name in enumerate(STATES)}
    time_split = TimeSplit(*(float(split[code, ok & kept].mean()) if latency.size else 0.0
                             for code in (COMPUTING, WAITING, QUEUED, THROTTLED)))
    services: StatsTable[str, ServiceStats] = (service_metrics(calls, trace.resources, pricing) if calls is not None
                                               else StatsTable(label="service"))
    classes: StatsTable[str, ClassStats] = (
        _class_metrics(arrival, done, task_type, failed, type_names, deadlines, warmup_s)
        if len(type_names) > 1 or any(d is not None for d in deadlines) else StatsTable(label="class"))
    cost = None
    if pricing:
        cost, class_cost = _costs(pricing, services, calls, trace.resources, task_type, type_names, classes, t_total)
        classes = StatsTable({k: replace(c, cost=class_cost[k]) if k in class_cost else c
                              for k, c in classes.items()}, label="class")
    throughput, goodput = _rates(arrival, done, finished, ok, warmup_s)
    return Result(
        model=model, strategy=strategy, seed=seed, tasks=n, completed=completed,
        failed=int(failed.sum()), t_total=t_total, throughput=throughput, goodput=goodput,
        latency=_latency(latency), concurrency=Concurrency(mean=in_flight, peak=peak, **by_state),
        time_split=time_split, resources=resources, services=services,
        stages=_stage_metrics(trace, resources, span), classes=classes, cost=cost, steady=steady,
        pool_startup_s=pool_startup_s,
        per_task=TaskData(trace=trace, arrival=arrival, done=done, task_type=task_type, completed=ok,
                          type_names=type_names, parallel_types=parallel_types, events=events, calls=calls,
                          engine=engine, summary=summary),
    )


def _latency(latency: np.ndarray) -> Latency:
    """The latency figures of these latencies (linear interpolation; NaN for none)."""
    if latency.size == 0:
        return Latency(math.nan, math.nan, math.nan, math.nan, math.nan)
    p50, p95, p99 = np.percentile(latency, [50, 95, 99])
    return Latency(mean=float(latency.mean()), p50=float(p50), p95=float(p95), p99=float(p99),
                   max=float(latency.max()))


def _rates(arrival: np.ndarray, done: np.ndarray, finished: np.ndarray, ok: np.ndarray,
           warmup_s: float) -> tuple[float, float]:
    """(throughput, goodput): tasks finished and completed in [max(warmup_s, first arrival), last finish],
    over its length (0 when the window is empty); without a warm-up, over t_total."""
    if not finished.any():
        return 0.0, 0.0
    start = max(warmup_s, float(np.nanmin(arrival)))
    window = float(np.nanmax(done)) - start
    if not window > 0:
        return 0.0, 0.0
    inside = done >= start  # NaN (unfinished) compares False
    return int((finished & inside).sum()) / window, int((ok & inside).sum()) / window


def _class_metrics(arrival: np.ndarray, done: np.ndarray, task_type: np.ndarray, failed: np.ndarray,
                   names: tuple[str, ...], deadlines: tuple[float | None, ...],
                   warmup_s: float = 0.0) -> StatsTable[str, ClassStats]:
    """Per task class: tasks, completed, failed, its own T_total (first arrival to last finish of the class),
    throughput and goodput, latency percentiles (the last three after the warm-up), and deadlines missed (late,
    failed or unfinished, over the whole run)."""
    out: dict[str, ClassStats] = {}
    for t, name in enumerate(names):
        mine = task_type == t
        ended = mine & ~np.isnan(done)
        ok = ended & ~failed
        latency = (done - arrival)[ok]
        span = float(np.max(done[ended]) - np.min(arrival[mine])) if ended.any() else 0.0
        throughput, goodput = _rates(arrival[mine], done[mine], ended[mine], ok[mine], warmup_s)
        deadline = deadlines[t] if t < len(deadlines) else None
        out[name] = ClassStats(
            tasks=int(mine.sum()), completed=int(ok.sum()), failed=int((mine & failed).sum()),
            t_total=span, throughput=throughput, goodput=goodput,
            latency=_latency((done - arrival)[ok & (arrival >= warmup_s)] if warmup_s > 0 else latency),
            deadline=deadline,
            deadline_missed=None if deadline is None else int(mine.sum() - (latency <= deadline + 1e-12).sum()),
        )
    return StatsTable(out, label="class")


@dataclass(frozen=True)
class Pricing:
    """A model's prices: `services` by name, and `capacity` as (what, slots, price per slot-second) rows."""

    services: dict[str, Price] = field(default_factory=dict)
    capacity: tuple[tuple[str, int, float], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.services or self.capacity)


def _usage_cost(price: Price, tokens_in: np.ndarray, tokens_out: np.ndarray) -> np.ndarray:
    """The cost of each accepted attempt."""
    return (tokens_in * price.input_per_1m + tokens_out * price.output_per_1m) / 1e6 + price.per_request


def _costs(pricing: Pricing, services: StatsTable[str, ServiceStats], calls: CallTable | None,
           resources: tuple[ResourceId, ...], task_type: np.ndarray, names: tuple[str, ...],
           classes: StatsTable[str, ClassStats], t_total: float) -> tuple[Cost, dict[str, float]]:
    """The run's cost split into usage, capacity and wasted usage, and the cost of each class's own calls
    (when there are classes and calls)."""
    usage = sum(entry.cost or 0.0 for entry in services.values())
    wasted = sum(entry.cost_wasted or 0.0 for entry in services.values())
    capacity = sum((slots * per_second * t_total for _, slots, per_second in pricing.capacity), 0.0)
    per_class: dict[str, float] = {}
    if classes and calls is not None and len(calls):
        per_task = np.zeros(task_type.size)
        taken = accepted(calls.outcome)
        for rid, resource in enumerate(resources):
            price = pricing.services.get(resource.name or "") if resource.kind == "service" else None
            mine = taken & (calls.service == rid)
            if price is not None and price.usage and mine.any():
                np.add.at(per_task, calls.task[mine], _usage_cost(price, calls.tokens_in[mine], calls.tokens_out[mine]))
        per_class = {name: float(per_task[task_type == t].sum()) for t, name in enumerate(names)}
    return Cost(total=usage + capacity, usage=usage, capacity=capacity, wasted=wasted), per_class


def _stage_metrics(trace: Trace, resources: StatsTable[ResourceId, ResourceStats],
                   span: float) -> StatsTable[str, StageStats]:
    """Per pipeline stage: items through it, throughput, batches and their mean size, worker utilisation,
    and the time-averaged items queued for it and mean seconds each waited."""
    out: dict[str, StageStats] = {}
    for rid, resource in enumerate(trace.resources):
        if resource.kind != "stage" or resource.name is None:
            continue
        runs = (trace.resource == rid) & (trace.kind == K_STAGE)
        items = float(trace.cpu_s[runs].sum())
        batches = int(runs.sum())
        entry = resources[resource]
        out[resource.name] = StageStats(
            items=items, throughput=items / span if span == span else 0.0, batches=batches,
            batch_size_mean=items / batches if batches else 0.0, workers=entry.capacity or 0,
            utilization=entry.utilization or 0.0, mean_queue=entry.mean_queue or 0.0,
            mean_wait=entry.mean_wait or 0.0,
        )
    return StatsTable(out, label="stage")


def service_metrics(calls: CallTable, resources: tuple[ResourceId, ...],
                    pricing: Pricing | None = None) -> StatsTable[str, ServiceStats]:
    """Per service: calls, requests (attempts) by outcome, retries, failed calls, tokens used and wasted on
    failed attempts the server accepted, batch sizes (per batch: a request served in a batch of k is 1/k of
    it), and with `pricing` the `cost` of its accepted attempts and the `cost_wasted` of those that failed."""
    out: dict[str, ServiceStats] = {}
    taken = accepted(calls.outcome)
    taken_failure = taken & (calls.outcome != OK)
    tokens = calls.tokens_in + calls.tokens_out
    for rid in np.unique(calls.service):
        mine = calls.service == rid
        name = resources[rid].name or ""
        outcome = calls.outcome[mine]
        n_calls = int((calls.attempt[mine] == 0).sum())
        requests = int(mine.sum())
        by_outcome = {label: int((outcome == code).sum()) for code, label in enumerate(OUTCOMES)}
        cost = cost_wasted = batches = batch_size_mean = None
        price = pricing.services.get(name) if pricing else None
        if price is not None and price.usage:
            cost, cost_wasted = (float(_usage_cost(price, calls.tokens_in[rows], calls.tokens_out[rows]).sum())
                                 for rows in (mine & taken, mine & taken_failure))
        sizes = calls.size[mine & taken].astype(float)
        batched = bool(sizes.size and sizes.max() > 1)
        if batched:
            batches = float((1 / sizes).sum())
            batch_size_mean = float(sizes.size / batches)
        out[name] = ServiceStats(
            calls=n_calls, requests=requests, **by_outcome, retries=requests - n_calls,
            failed=n_calls - by_outcome["ok"], tokens=float(tokens[mine & taken].sum()),
            tokens_wasted=float(tokens[mine & taken_failure].sum()), cost=cost, cost_wasted=cost_wasted,
            batches=batches, batch_size_mean=batch_size_mean, batch_size_max=int(sizes.max()) if batched else None,
        )
    return StatsTable(dict(sorted(out.items())), label="service")


class Fold:
    """What `compute_result` takes from the records of a trace, summed a chunk at a time (`trace.CHUNK` records,
    in record order): each task's seconds in each state, each task's admission, and per resource code the
    seconds queued (waits, and CPU stretched on a shared runner), the CPU run on it and the time its slots were
    held; and the CPU of every cpu and resume record.

    A summary-only run folds the records as the engine makes them and keeps none (`TraceBuilder(fold=...)`);
    otherwise `compute_result` folds the trace's own chunks, so both give the same figures to the last bit.
    """

    def __init__(self, n: int) -> None:
        self.split = np.zeros((len(STATES), n))
        self.admitted = np.full(n, math.nan)
        self.wait: dict[int, float] = {}
        self.cpu_busy: dict[int, float] = {}
        self.hold_busy: dict[int, float] = {}
        self.cpu = 0.0
        self.records = 0

    def feed(self, trace: Trace) -> Fold:
        """Fold a whole trace, chunk by chunk; returns self."""
        for chunk in trace.chunks():
            self(chunk)
        return self

    def __call__(self, chunk: Trace) -> None:
        """Fold one chunk of records."""
        self.records += len(chunk)
        add_split(self.split, chunk)
        kind, res, cpu_s = chunk.kind, chunk.resource, chunk.cpu_s
        is_cpu = (kind == K_CPU) | (kind == K_RESUME)
        admits = kind == K_ADMIT
        self.admitted[chunk.task[admits]] = chunk.start[admits]
        self.cpu += float(cpu_s[is_cpu].sum())
        for rid in np.unique(res).tolist():
            if rid < 0:
                continue
            # columns cut to the resource's records before any arithmetic
            mine = res == rid
            my_kind, my_start, my_cpu = kind[mine], chunk.start[mine], cpu_s[mine]
            waited = (my_start - chunk.enqueue[mine]).sum()
            held = chunk.end[mine] - my_start
            stretch = held - my_cpu
            np.maximum(stretch, 0.0, out=stretch)
            stretch[my_kind != K_CPU] = 0.0
            self.wait[rid] = self.wait.get(rid, 0.0) + float(waited + stretch.sum())
            self.cpu_busy[rid] = self.cpu_busy.get(rid, 0.0) + float(my_cpu[is_cpu[mine]].sum())
            holds = (my_kind == K_USE) | (my_kind == K_CALL) | (my_kind == K_CPU) | (my_kind == K_STAGE)
            # a call served in a batch of k (cpu_s = k) keeps the instance busy for 1/k of its span
            share = np.where((my_kind == K_CALL) & (my_cpu > 0), my_cpu, 1.0)
            self.hold_busy[rid] = self.hold_busy.get(rid, 0.0) + float((held[holds] / share[holds]).sum())


def _resources(fold: Fold, resources: tuple[ResourceId, ...], arrival: np.ndarray, done: np.ndarray,
               capacities: dict[ResourceId, int | None], span: float, n: int) -> StatsTable[ResourceId, ResourceStats]:
    admitted = np.where(np.isnan(fold.admitted), arrival, fold.admitted)
    out: dict[ResourceId, ResourceStats] = {}
    for rid, resource in enumerate(resources):
        if resource.kind in ADMISSION:
            busy = float(np.nansum(done - admitted))
        elif resource.kind in ("loop", "gil"):
            busy = fold.cpu_busy.get(rid, 0.0)
        else:
            busy = fold.hold_busy.get(rid, 0.0)
        out[resource] = _resource_entry(busy, fold.wait.get(rid, 0.0), capacities.get(resource), span, n)
    cores = capacities.get(_CORES)
    if _CORES not in out and _CORES in capacities:
        out[_CORES] = _resource_entry(fold.cpu, 0.0, cores, span, n)
    elif _CORES in out:
        mean_busy = fold.cpu / span
        out[_CORES] = replace(out[_CORES], mean_busy=mean_busy,
                              utilization=mean_busy / cores if cores else None)
    return StatsTable(dict(sorted(out.items(), key=lambda kv: str(kv[0]))), label="resource")


def _resource_entry(busy: float, total_wait: float, capacity: int | None, span: float, n: int) -> ResourceStats:
    mean_busy = busy / span if span == span else 0.0
    return ResourceStats(
        capacity=capacity,
        utilization=(mean_busy / capacity) if capacity else None,
        mean_busy=mean_busy,
        mean_wait=total_wait / n,
        mean_queue=total_wait / span if span == span else 0.0,
    )
