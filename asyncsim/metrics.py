"""Metrics as pure functions of a trace and its task table — one definition for simulated and real runs.

Definitions (also in the README):
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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .rules.calls import accepted
from .services import OK, OUTCOMES, Price
from .steady import Steady
from .trace import K_ADMIT, K_BATCH, K_CALL, K_CPU, K_IO, K_RESUME, K_STAGE, K_THROTTLE, K_USE, CallTable, Trace

__all__ = ["METRICS", "STATES", "Pricing", "Result", "compute_result", "flat_metrics", "service_metrics",
           "state_segments"]

COMPUTING, WAITING, QUEUED, THROTTLED = 0, 1, 2, 3
STATES = ("computing", "waiting", "queued", "throttled")
_PRIORITY = (COMPUTING, WAITING, THROTTLED, QUEUED)  # a task in several states at once (branches) is in the first


# The scalar metrics every run has, by the names sweeps, SLOs and tables use. The service totals sum over
# every service (0 without services); cost is 0 in a model without prices.
METRICS = (
    "t_total", "throughput", "goodput", "tasks", "completed", "failed", "failed_fraction",
    "latency_mean", "latency_p50", "latency_p95", "latency_p99", "latency_max",
    "concurrency_mean", "concurrency_peak", *(f"concurrency_{s}_mean" for s in STATES),
    "time_split_task", "time_split_wait", "time_split_queue", "time_split_throttled",
    "requests", "rate_limited", "retries", "tokens", "tokens_wasted", "cost", "cost_wasted", "overloaded",
)
_SERVICE_TOTALS = ("requests", "rate_limited", "retries", "tokens", "tokens_wasted")
_CLASS_KEYS = ("tasks", "completed", "failed", "t_total", "throughput", "goodput", "deadline_missed", "cost")


def flat_metrics(d: dict[str, Any]) -> dict[str, float]:
    """The scalar metrics of a `Result.to_dict()` object by flat name: `METRICS`, then per class
    `CLASS.completed`, `CLASS.failed`, `CLASS.p99` (and the other latency figures), `CLASS.deadline_missed`,
    `CLASS.cost`. `overloaded` is 1 when an open workload's offered load reaches its binding limit (the queue
    grows without bound: latency percentiles are not an answer), else 0."""
    out: dict[str, float] = {}
    for key in ("t_total", "throughput", "goodput", "tasks", "completed", "failed", "failed_fraction"):
        out[key] = d[key]
    for group in ("latency", "concurrency", "time_split"):
        out.update({f"{group}_{k}": v for k, v in d[group].items()})
    services = d.get("services", {})
    for key in _SERVICE_TOTALS:
        out[key] = float(sum(entry.get(key, 0.0) for entry in services.values()))
    cost = d.get("cost", {})
    out["cost"], out["cost_wasted"] = cost.get("total", 0.0), cost.get("wasted", 0.0)
    load = (d.get("steady") or {}).get("load")
    out["overloaded"] = 1.0 if load is not None and load >= 1 else 0.0  # see steady.Steady.overloaded
    for name, entry in d.get("classes", {}).items():
        out.update({f"{name}.{k}": entry[k] for k in _CLASS_KEYS if k in entry})
        out.update({f"{name}.{k}": v for k, v in entry["latency"].items()})
    return out


@dataclass(frozen=True, eq=False)
class Result:
    """Metrics of one run (simulated or real), computed from its trace; `to_dict()` is the JSON shape.

    `completed_tasks` marks, per task, those that completed (neither failed nor unfinished).
    """

    model: str
    strategy: str
    seed: int | None
    tasks: int
    completed: int
    failed: int
    t_total: float
    throughput: float
    goodput: float
    latency: dict[str, float]
    concurrency: dict[str, float]
    time_split: dict[str, float]
    resources: dict[str, dict[str, float | None]]
    trace: Trace = field(repr=False)
    arrival: np.ndarray = field(repr=False)
    done: np.ndarray = field(repr=False)
    task_type: np.ndarray = field(repr=False)
    type_names: tuple[str, ...] = field(repr=False, default=())
    parallel_types: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=bool))
    events: int = field(repr=False, default=0)
    services: dict[str, dict[str, float]] = field(default_factory=dict)
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    classes: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: CallTable | None = field(repr=False, default=None)
    cost: dict[str, float] = field(default_factory=dict)
    completed_tasks: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, dtype=bool))
    steady: Steady | None = None

    @property
    def lost(self) -> int:
        """Tasks that did not complete (failed, or unfinished when a run was interrupted)."""
        return self.tasks - self.completed

    def metrics(self) -> dict[str, float]:
        """Every scalar metric by the name SLOs, sweeps and tables use (`t_total`, `goodput`, `latency_p99`,
        `rate_limited`, `cost`, `CLASS.p99`, ...); see `METRICS` for the names every run has."""
        return flat_metrics(self.to_dict())

    @property
    def bottleneck(self) -> str | None:
        """The pipeline stage with the highest utilisation (None without stages)."""
        if not self.stages:
            return None
        return max(self.stages, key=lambda k: self.stages[k]["utilization"])

    def to_dict(self) -> dict[str, Any]:
        """The `run --json` object."""
        out = {
            "model": self.model, "strategy": self.strategy, "seed": self.seed,
            "tasks": self.tasks, "completed": self.completed, "failed": self.failed,
            "failed_fraction": self.failed / self.tasks if self.tasks else 0.0,
            "t_total": self.t_total, "throughput": self.throughput, "goodput": self.goodput,
            "latency": dict(self.latency), "concurrency": dict(self.concurrency),
            "time_split": dict(self.time_split),
            "resources": {k: dict(v) for k, v in self.resources.items()},
        }
        if self.steady is not None:
            out["steady"] = self.steady.to_dict()
        if self.services:
            out["services"] = {k: dict(v) for k, v in self.services.items()}
        if self.cost:
            out["cost"] = dict(self.cost)
        if self.classes:
            out["classes"] = {k: {m: dict(x) if isinstance(x, dict) else x for m, x in v.items()}
                              for k, v in self.classes.items()}
        if self.stages:
            out["stages"] = {k: dict(v) for k, v in self.stages.items()}
            out["bottleneck"] = self.bottleneck
        return out

    def queue_series(self):  # noqa: ANN201
        """Items queued for each pipeline stage over time (waiting to enter it, in its queue, or collecting a
        batch): a long DataFrame with columns time, stage, queued."""
        import pandas as pd

        tr = self.trace
        frames = []
        for rid, name in enumerate(tr.resources):
            if not name.startswith("stage:"):
                continue
            mine = (tr.resource == rid) & ((tr.kind == K_STAGE) | (tr.kind == K_BATCH))
            t0, t1 = tr.enqueue[mine], tr.start[mine]
            times = np.unique(np.concatenate([t0, t1]))
            frames.append(pd.DataFrame({"time": times, "stage": name.removeprefix("stage:"),
                                        "queued": _step_count(times, t0, t1)}))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["time", "stage", "queued"])

    def to_frame(self):  # noqa: ANN201 - pandas is imported lazily
        """One row per task: type, arrival, completion, latency and its computing/waiting/queued split."""
        import pandas as pd

        split = _task_split(self.trace, self.arrival.size, _overlapping(self.parallel_types, self.task_type))
        names = np.array(self.type_names or ["type0"], dtype=object)
        return pd.DataFrame({
            "task": np.arange(self.arrival.size), "type": names[self.task_type],
            "arrival": self.arrival, "done": self.done, "latency": self.done - self.arrival,
            **{name: split[code] for code, name in enumerate(STATES)},
        })

    def concurrency_series(self):  # noqa: ANN201
        """The step function of tasks in flight and of those computing / waiting / queued, as a DataFrame.

        Row k holds the counts from `time[k]` until the next row's time.
        """
        import pandas as pd

        flight_times, flight = _in_flight_steps(self.arrival, self.done)
        _seg_task, t0, t1, state = state_segments(self.trace)
        # a row wherever any count changes: arrivals, completions and every change of a task's state
        times = np.unique(np.concatenate([flight_times, t0, t1]))
        at = np.searchsorted(flight_times, times, side="right") - 1
        in_flight = np.where(at >= 0, flight[np.maximum(at, 0)], 0)
        columns = {"time": times, "in_flight": in_flight}
        for code, name in enumerate(STATES):
            mask = state == code
            columns[name] = _step_count(times, t0[mask], t1[mask])
        return pd.DataFrame(columns)


def _overlapping(parallel_types: np.ndarray, task_type: np.ndarray) -> np.ndarray:
    """Per task: may its records overlap (it has parallel branches)?"""
    return parallel_types[task_type] if parallel_types.size else np.zeros(task_type.size, dtype=bool)


def _percentiles(latency: np.ndarray) -> dict[str, float]:
    if latency.size == 0:
        return {k: math.nan for k in ("mean", "p50", "p95", "p99", "max")}
    p50, p95, p99 = np.percentile(latency, [50, 95, 99])
    return {"mean": float(latency.mean()), "p50": float(p50), "p95": float(p95), "p99": float(p99),
            "max": float(latency.max())}


def _in_flight_steps(arrival: np.ndarray, done: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = ~np.isnan(done)
    times = np.concatenate([arrival[ok], done[ok]])
    delta = np.concatenate([np.ones(ok.sum(), dtype=np.int8), -np.ones(ok.sum(), dtype=np.int8)])
    order = np.lexsort((delta, times))  # departures (-1) before arrivals at equal times
    times, level = times[order], np.cumsum(delta[order], dtype=np.int64)
    last = np.r_[times[1:] != times[:-1], True]  # keep the level after the last event at each time
    return times[last], level[last]


def _peak_in_flight(arrival: np.ndarray, done: np.ndarray) -> int:
    _, levels = _in_flight_steps(arrival, done)
    return int(levels.max()) if levels.size else 0


def _step_count(times: np.ndarray, t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
    """How many [t0, t1) intervals cover each of `times`."""
    started = np.searchsorted(np.sort(t0), times, side="right")
    ended = np.searchsorted(np.sort(t1), times, side="right")
    return started - ended


_FAMILIES = 5  # kinds of interval a record implies (see _family)
_SLICE = 1 << 20  # records summed at a time by _task_split: bounds its temporaries on multi-million traces


def _family(trace: Trace, family: int, records: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """One family of the intervals that `records` imply: (task, t0, t1) where t1 > t0, and their state.

    0: queued before start; 1: computing, the cpu_s of cpu and resume records; 2: queued for the rest of
    their span (preempted, or sharing a core); 3: waiting (io, call, admit, a batch run on another item);
    4: throttled before start (throttle records).
    """
    kind, start, end = trace.kind[records], trace.start[records], trace.end[records]
    mask: np.ndarray | None
    if family == 0:
        mask, t0, t1, state = kind != K_THROTTLE, trace.enqueue[records], start, QUEUED
    elif family == 4:
        mask, t0, t1, state = kind == K_THROTTLE, trace.enqueue[records], start, THROTTLED
    elif family == 3:
        mask = (kind == K_IO) | (kind == K_CALL) | (kind == K_ADMIT) | (kind == K_BATCH)
        t0, t1, state = start, end, WAITING
    else:
        mask = (kind == K_CPU) | (kind == K_RESUME)
        cpu_end = start + np.minimum(trace.cpu_s[records], end - start)
        t0, t1, state = (start, cpu_end, COMPUTING) if family == 1 else (cpu_end, end, QUEUED)
    keep = t1 > t0 if mask is None else mask & (t1 > t0)
    return trace.task[records][keep], t0[keep], t1[keep], state


def _intervals(trace: Trace) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every (task, t0, t1, state) interval the records imply; they may overlap only across branches."""
    families = [_family(trace, f, slice(None)) for f in range(_FAMILIES)]
    return (np.concatenate([task for task, _, _, _ in families]), np.concatenate([t0 for _, t0, _, _ in families]),
            np.concatenate([t1 for _, _, t1, _ in families]),
            np.concatenate([np.full(task.size, state, dtype=np.int8) for task, _, _, state in families]))


def state_segments(trace: Trace) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Disjoint (task, t0, t1, state) segments: each task's state at each moment, by priority."""
    task, t0, t1, state = _intervals(trace)
    if task.size == 0:
        return task, t0, t1, state
    ev_task = np.concatenate([task, task])
    ev_time = np.concatenate([t0, t1])
    ev_state = np.concatenate([state, state])
    ev_delta = np.concatenate([np.ones(task.size, np.int32), -np.ones(task.size, np.int32)])
    order = np.lexsort((ev_time, ev_task))
    ev_task, ev_time, ev_state, ev_delta = ev_task[order], ev_time[order], ev_state[order], ev_delta[order]
    counts = np.zeros((ev_task.size, len(STATES)), dtype=np.int32)
    counts[np.arange(ev_task.size), ev_state] = ev_delta
    np.cumsum(counts, axis=0, out=counts)
    active = counts > 0
    seg_state = np.full(ev_task.size, -1, dtype=np.int64)
    for code in reversed(_PRIORITY):
        seg_state[active[:, code]] = code
    same = np.r_[ev_task[1:] == ev_task[:-1], False]
    length = np.r_[ev_time[1:] - ev_time[:-1], 0.0]
    keep = same & (length > 0) & (seg_state >= 0)
    idx = np.flatnonzero(keep)
    return ev_task[idx], ev_time[idx], ev_time[idx + 1], seg_state[idx].astype(np.int8)


def _task_split(trace: Trace, n: int, overlapping: np.ndarray) -> np.ndarray:
    """Seconds each task spent in each state (STATES): a (4, n) array."""
    out = np.zeros((len(STATES), n))
    if overlapping.any():
        task, t0, t1, state = state_segments(trace)
        for code in range(len(STATES)):
            mask = state == code
            out[code] = np.bincount(task[mask], weights=(t1 - t0)[mask], minlength=n)
        return out
    # Intervals that never overlap need no sweep: sum them family by family, slice by slice. np.add.at adds
    # in order, so each sum is the one a bincount over all intervals at once would make, to the last bit,
    # without holding them all (a million tasks imply ~6M intervals).
    for family in range(_FAMILIES):
        for lo in range(0, len(trace), _SLICE):
            task, t0, t1, state = _family(trace, family, slice(lo, lo + _SLICE))
            np.add.at(out[state], task, t1 - t0)
    return out


def compute_result(trace: Trace, arrival: np.ndarray, done: np.ndarray, task_type: np.ndarray,
                   failed: np.ndarray, *, model: str, strategy: str, seed: int | None,
                   capacities: dict[str, int | None], parallel_types: np.ndarray,
                   type_names: tuple[str, ...] = (), events: int = 0, calls: CallTable | None = None,
                   deadlines: tuple[float | None, ...] = (), pricing: Pricing | None = None,
                   warmup_s: float = 0.0, steady: Steady | None = None) -> Result:
    """Compute every metric of a run from its trace and task table.

    Per-class figures are given when there is more than one task type or a type has a deadline
    (`deadlines[t]`, seconds after arrival). `capacities` gives each resource's slot count (None when
    unbounded); `parallel_types[t]` says whether tasks of type t have parallel branches (their states need
    the priority sweep); `pricing` gives `cost`; `warmup_s` (the run's clock) leaves the tasks arriving
    before it out of the latency figures, time split and throughput (see the module docstring); `steady` is
    the verdict to carry (`steady.steady_state`).
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
    # first, while nothing else is held: on a multi-million-record trace its temporaries weigh the most
    resources = _resources(trace, arrival, done, capacities, span, max(n, 1))
    peak = _peak_in_flight(arrival, done)
    split = _task_split(trace, n, _overlapping(parallel_types, task_type))
    in_flight = float((done - arrival)[finished].sum() / span) if finished.any() and span == span else 0.0
    concurrency: dict[str, float] = {"mean": in_flight, "peak": peak}
    for code, name in enumerate(STATES):
        concurrency[f"{name}_mean"] = float(split[code, finished].sum() / span) if in_flight else 0.0
    time_split = {
        name: float(split[code, ok & kept].mean()) if latency.size else 0.0
        for code, name in zip((COMPUTING, WAITING, QUEUED, THROTTLED), ("task", "wait", "queue", "throttled"),
                              strict=True)
    }
    services = service_metrics(calls, trace.resources, pricing) if calls is not None else {}
    classes = (_class_metrics(arrival, done, task_type, failed, type_names, deadlines, warmup_s)
               if len(type_names) > 1 or any(d is not None for d in deadlines) else {})
    cost = _costs(pricing, services, calls, trace.resources, task_type, type_names, classes, t_total) if pricing else {}
    throughput, goodput = _rates(arrival, done, finished, ok, warmup_s)
    return Result(
        model=model, strategy=strategy, seed=seed, tasks=n, completed=completed,
        failed=int(failed.sum()), t_total=t_total, throughput=throughput, goodput=goodput,
        latency=_percentiles(latency), concurrency=concurrency, time_split=time_split,
        resources=resources,
        trace=trace, arrival=arrival, done=done, task_type=task_type, type_names=type_names,
        parallel_types=parallel_types, events=events, services=services, calls=calls,
        stages=_stage_metrics(trace, resources, span), classes=classes, cost=cost, completed_tasks=ok,
        steady=steady,
    )


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
                   warmup_s: float = 0.0) -> dict[str, dict[str, Any]]:
    """Per task class: tasks, completed, failed, its own T_total (first arrival to last finish of the class),
    throughput and goodput, latency percentiles (the last three after the warm-up), and deadlines missed (late,
    failed or unfinished, over the whole run)."""
    out: dict[str, dict[str, Any]] = {}
    for t, name in enumerate(names):
        mine = task_type == t
        ended = mine & ~np.isnan(done)
        ok = ended & ~failed
        latency = (done - arrival)[ok]
        span = float(np.max(done[ended]) - np.min(arrival[mine])) if ended.any() else 0.0
        throughput, goodput = _rates(arrival[mine], done[mine], ended[mine], ok[mine], warmup_s)
        entry: dict[str, Any] = {
            "tasks": int(mine.sum()), "completed": int(ok.sum()), "failed": int((mine & failed).sum()),
            "t_total": span, "throughput": throughput, "goodput": goodput,
            "latency": _percentiles((done - arrival)[ok & (arrival >= warmup_s)] if warmup_s > 0 else latency),
        }
        deadline = deadlines[t] if t < len(deadlines) else None
        if deadline is not None:
            entry["deadline"] = deadline
            entry["deadline_missed"] = int(mine.sum() - (latency <= deadline + 1e-12).sum())
        out[name] = entry
    return out


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


def _costs(pricing: Pricing, services: dict[str, dict[str, float]], calls: CallTable | None,
           resources: tuple[str, ...], task_type: np.ndarray, names: tuple[str, ...],
           classes: dict[str, dict[str, Any]], t_total: float) -> dict[str, float]:
    """The run's cost split into usage, capacity and wasted usage; adds `cost` to each class it can."""
    usage = sum(entry.get("cost", 0.0) for entry in services.values())
    wasted = sum(entry.get("cost_wasted", 0.0) for entry in services.values())
    capacity = sum((slots * per_second * t_total for _, slots, per_second in pricing.capacity), 0.0)
    if classes and calls is not None and len(calls):
        per_task = np.zeros(task_type.size)
        taken = accepted(calls.outcome)
        for rid, resource in enumerate(resources):
            price = pricing.services.get(resource.removeprefix("service:")) if resource.startswith("service:") else None
            mine = taken & (calls.service == rid)
            if price is not None and price.usage and mine.any():
                np.add.at(per_task, calls.task[mine], _usage_cost(price, calls.tokens_in[mine], calls.tokens_out[mine]))
        for t, name in enumerate(names):
            classes[name]["cost"] = float(per_task[task_type == t].sum())
    return {"total": usage + capacity, "usage": usage, "capacity": capacity, "wasted": wasted}


def _stage_metrics(trace: Trace, resources: dict[str, dict[str, float | None]],
                   span: float) -> dict[str, dict[str, float]]:
    """Per pipeline stage: items through it, throughput, batches and their mean size, worker utilisation,
    and the time-averaged items queued for it and mean seconds each waited."""
    out: dict[str, dict[str, float]] = {}
    for rid, name in enumerate(trace.resources):
        if not name.startswith("stage:"):
            continue
        runs = (trace.resource == rid) & (trace.kind == K_STAGE)
        items = float(trace.cpu_s[runs].sum())
        batches = int(runs.sum())
        entry = resources[name]
        out[name.removeprefix("stage:")] = {
            "items": items, "throughput": items / span if span == span else 0.0, "batches": batches,
            "batch_size_mean": items / batches if batches else 0.0, "workers": entry["capacity"] or 0,
            "utilization": entry["utilization"] or 0.0, "mean_queue": entry["mean_queue"] or 0.0,
            "mean_wait": entry["mean_wait"] or 0.0,
        }
    return out


def service_metrics(calls: CallTable, resources: tuple[str, ...],
                    pricing: Pricing | None = None) -> dict[str, dict[str, float]]:
    """Per service: calls, requests (attempts) by outcome, retries, failed calls, tokens used and wasted on
    failed attempts the server accepted, batch sizes (per batch: a request served in a batch of k is 1/k of
    it), and with `pricing` the `cost` of its accepted attempts and the `cost_wasted` of those that failed."""
    out: dict[str, dict[str, float]] = {}
    taken = accepted(calls.outcome)
    taken_failure = taken & (calls.outcome != OK)
    tokens = calls.tokens_in + calls.tokens_out
    for rid in np.unique(calls.service):
        mine = calls.service == rid
        name = resources[rid].removeprefix("service:")
        outcome = calls.outcome[mine]
        n_calls = int((calls.attempt[mine] == 0).sum())
        entry: dict[str, float] = {"calls": n_calls, "requests": int(mine.sum())}
        for code, label in enumerate(OUTCOMES):
            entry[label] = int((outcome == code).sum())
        entry["retries"] = entry["requests"] - n_calls
        entry["failed"] = n_calls - entry["ok"]
        entry["tokens"] = float(tokens[mine & taken].sum())
        entry["tokens_wasted"] = float(tokens[mine & taken_failure].sum())
        price = pricing.services.get(name) if pricing else None
        if price is not None and price.usage:
            for key, rows in (("cost", mine & taken), ("cost_wasted", mine & taken_failure)):
                entry[key] = float(_usage_cost(price, calls.tokens_in[rows], calls.tokens_out[rows]).sum())
        sizes = calls.size[mine & taken].astype(float)
        if sizes.size and sizes.max() > 1:
            batches = float((1 / sizes).sum())
            entry["batches"] = batches
            entry["batch_size_mean"] = float(sizes.size / batches)
            entry["batch_size_max"] = int(sizes.max())
        out[name] = entry
    return dict(sorted(out.items()))


def _resources(trace: Trace, arrival: np.ndarray, done: np.ndarray, capacities: dict[str, int | None],
               span: float, n: int) -> dict[str, dict[str, float | None]]:
    kind, res = trace.kind, trace.resource
    is_cpu = (kind == K_CPU) | (kind == K_RESUME)
    admitted = arrival.copy()
    admits = kind == K_ADMIT
    admitted[trace.task[admits]] = trace.start[admits]
    out: dict[str, dict[str, float | None]] = {}
    for rid, name in enumerate(trace.resources):
        # columns cut to the resource's records before any arithmetic: temporaries stay small on long traces
        mine = res == rid
        my_kind, my_start = kind[mine], trace.start[mine]
        waited = (my_start - trace.enqueue[mine]).sum()
        held = trace.end[mine] - my_start
        stretch = held - trace.cpu_s[mine]
        np.maximum(stretch, 0.0, out=stretch)
        stretch[my_kind != K_CPU] = 0.0
        total_wait = float(waited + stretch.sum())
        if name in ("limit", "workers"):
            busy = float(np.nansum(done - admitted))
        elif name in ("loop", "gil"):
            busy = float(trace.cpu_s[mine & is_cpu].sum())
        else:
            holds = (my_kind == K_USE) | (my_kind == K_CALL) | (my_kind == K_CPU) | (my_kind == K_STAGE)
            # a call served in a batch of k (cpu_s = k) keeps the instance busy for 1/k of its span
            share = np.where((my_kind == K_CALL) & (trace.cpu_s[mine] > 0), trace.cpu_s[mine], 1.0)
            busy = float((held[holds] / share[holds]).sum())
        cap = capacities.get(name)
        out[name] = _resource_entry(busy, total_wait, cap, span, n)
    if "cores" not in out and "cores" in capacities:
        out["cores"] = _resource_entry(float(trace.cpu_s[is_cpu].sum()), 0.0, capacities["cores"], span, n)
    elif "cores" in out:
        out["cores"]["mean_busy"] = float(trace.cpu_s[is_cpu].sum() / span)
        out["cores"]["utilization"] = out["cores"]["mean_busy"] / capacities["cores"]  # type: ignore[operator]
    return dict(sorted(out.items()))


def _resource_entry(busy: float, total_wait: float, capacity: int | None, span: float,
                    n: int) -> dict[str, float | None]:
    mean_busy = busy / span if span == span else 0.0
    return {
        "capacity": capacity,
        "utilization": (mean_busy / capacity) if capacity else None,
        "mean_busy": mean_busy,
        "mean_wait": total_wait / n,
        "mean_queue": total_wait / span if span == span else 0.0,
    }
