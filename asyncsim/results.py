"""`Result`: a run's figures as typed, frozen objects (never nested dicts), and what it keeps of the run.

`Result.to_dict()` is the `run --json` object (README, "Output"), key for key; `Result.from_dict` reads one
back, which is how `report` consumes saved runs. Its parts are the statistics of `stats`; `metrics.
compute_result` makes it from a trace. A Result read back from JSON has the figures only: what needs the
trace or the per-task table (`trace`, `to_frame()`, `concurrency_series()`, ...) raises ValueError saying so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .states import STATES, in_flight_steps, overlapping, state_segments, step_count, task_split
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
from .trace import K_BATCH, K_STAGE, CallTable, ResourceId, Trace

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["METRICS", "Result", "TaskData", "flat_metrics"]

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


@dataclass(frozen=True, eq=False)
class TaskData:
    """What a Result keeps of its run besides the figures (never in its JSON): the trace, the call attempts and
    one row per task — `arrival` and `done` times (NaN: unfinished), `task_type` codes (their names in
    `type_names`; `parallel_types[t]`: type t has parallel branches) and `completed` (neither failed nor
    unfinished) — and the engine that computed it and its event count."""

    trace: Trace
    arrival: np.ndarray
    done: np.ndarray
    task_type: np.ndarray
    completed: np.ndarray
    type_names: tuple[str, ...] = ()
    parallel_types: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    events: int = 0
    calls: CallTable | None = None
    engine: str = ""
    summary: bool = False  # a summary-only run: no trace was kept


@dataclass(frozen=True, eq=False)
class Result:
    """Metrics of one run (simulated or real); `to_dict()` is the JSON shape, `from_dict` reads it back.

    `cost` is None and `services`, `stages` and `classes` are empty when the model has no prices, services,
    stages or several task classes (and deadlines). `per_task` holds the trace and the per-task table (None in
    a Result read from JSON); `trace`, `arrival`, `done` and the other per-task properties read it.
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
    latency: Latency
    concurrency: Concurrency
    time_split: TimeSplit
    resources: StatsTable[ResourceId, ResourceStats] = field(default_factory=lambda: StatsTable(label="resource"))
    services: StatsTable[str, ServiceStats] = field(default_factory=lambda: StatsTable(label="service"))
    stages: StatsTable[str, StageStats] = field(default_factory=lambda: StatsTable(label="stage"))
    classes: StatsTable[str, ClassStats] = field(default_factory=lambda: StatsTable(label="class"))
    cost: Cost | None = None
    steady: Steady | None = None
    pool_startup_s: float | None = None  # starting the process pool (None: no pool), inside t_total
    per_task: TaskData | None = field(default=None, repr=False)

    @property
    def lost(self) -> int:
        """Tasks that did not complete (failed, or unfinished when a run was interrupted)."""
        return self.tasks - self.completed

    @property
    def failed_fraction(self) -> float:
        """failed / tasks (0 without tasks)."""
        return self.failed / self.tasks if self.tasks else 0.0

    @property
    def bottleneck(self) -> str | None:
        """The pipeline stage with the highest utilisation (None without stages)."""
        if not self.stages:
            return None
        return max(self.stages, key=lambda k: self.stages[k].utilization)

    def metrics(self) -> dict[str, float]:
        """Every scalar metric by the name SLOs, sweeps and tables use: `METRICS` (`t_total`, `goodput`,
        `latency_p99`, `rate_limited` summed over services, `cost`, ...), then per class `CLASS.completed`,
        `CLASS.failed`, `CLASS.p99` (and the other latency figures), `CLASS.deadline_missed`, `CLASS.cost`.
        `overloaded` is 1 when an open workload's offered load reaches its binding limit (the queue grows
        without bound: latency percentiles are not an answer), else 0."""
        out: dict[str, float] = {
            "t_total": self.t_total, "throughput": self.throughput, "goodput": self.goodput, "tasks": self.tasks,
            "completed": self.completed, "failed": self.failed, "failed_fraction": self.failed_fraction,
        }
        for group, part in (("latency", self.latency), ("concurrency", self.concurrency),
                            ("time_split", self.time_split)):
            out.update({f"{group}_{k}": v for k, v in part.to_dict().items()})
        for key in _SERVICE_TOTALS:
            out[key] = float(sum(getattr(entry, key) for entry in self.services.values()))
        out["cost"] = self.cost.total if self.cost is not None else 0.0
        out["cost_wasted"] = self.cost.wasted if self.cost is not None else 0.0
        out["overloaded"] = 1.0 if self.steady is not None and self.steady.overloaded else 0.0
        for name, entry in self.classes.items():
            figures = entry.to_dict()
            out.update({f"{name}.{k}": figures[k] for k in _CLASS_KEYS if k in figures})
            out.update({f"{name}.{k}": v for k, v in entry.latency.to_dict().items()})
        return out

    def to_dict(self) -> dict[str, Any]:
        """The `run --json` object."""
        out = {
            "model": self.model, "strategy": self.strategy, "seed": self.seed,
            "tasks": self.tasks, "completed": self.completed, "failed": self.failed,
            "failed_fraction": self.failed_fraction,
            "t_total": self.t_total, "throughput": self.throughput, "goodput": self.goodput,
            "latency": self.latency.to_dict(), "concurrency": self.concurrency.to_dict(),
            "time_split": self.time_split.to_dict(), "resources": self.resources.to_dict(),
        }
        if self.steady is not None:
            out["steady"] = self.steady.to_dict()
        if self.pool_startup_s is not None:
            out["pool_startup_s"] = self.pool_startup_s
        if self.services:
            out["services"] = self.services.to_dict()
        if self.cost is not None:
            out["cost"] = self.cost.to_dict()
        if self.classes:
            out["classes"] = self.classes.to_dict()
        if self.stages:
            out["stages"] = self.stages.to_dict()
            out["bottleneck"] = self.bottleneck
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Result:
        """The Result of a `to_dict()` object: a saved `run --json`, one run of `compare --json` or of `validate
        --json`, or the means of `run --replications` (its counts may then be fractional). It has no per-task
        data. What the commands add beside the figures (`ci95`, `bounds`, `detail`, ...) is not read, and
        `failed_fraction` and `bottleneck` are computed again.

        Raises:
            ValueError: naming the first key that is missing or malformed.
        """
        if not isinstance(d, Mapping):
            raise ValueError(f"a run's figures must be an object, got {type(d).__name__}")
        missing = [k for k in ("model", "strategy", "tasks", "completed", "failed", "t_total", "throughput",
                               "latency", "concurrency", "time_split", "resources") if k not in d]
        if missing:
            raise ValueError(f"missing {missing[0]!r}")
        try:
            resources = {ResourceId.parse(k): ResourceStats.from_dict(v, f"resources.{k}")
                         for k, v in d["resources"].items()}
            steady = Steady.from_dict(d["steady"]) if d.get("steady") is not None else None
        except KeyError as exc:
            raise ValueError(f"steady: missing {exc}") from None
        return cls(
            model=d["model"], strategy=d["strategy"], seed=d.get("seed"), tasks=d["tasks"],
            completed=d["completed"], failed=d["failed"], t_total=d["t_total"], throughput=d["throughput"],
            goodput=d.get("goodput", d["throughput"]),  # saved before goodput was kept: every task completed
            latency=Latency.from_dict(d["latency"]), concurrency=Concurrency.from_dict(d["concurrency"]),
            time_split=TimeSplit.from_dict(d["time_split"]),
            resources=StatsTable(resources, label="resource"),
            services=StatsTable({k: ServiceStats.from_dict(v, f"services.{k}")
                                 for k, v in d.get("services", {}).items()}, label="service"),
            stages=StatsTable({k: StageStats.from_dict(v, f"stages.{k}") for k, v in d.get("stages", {}).items()},
                              label="stage"),
            classes=StatsTable({k: ClassStats.from_dict(v, f"classes.{k}") for k, v in d.get("classes", {}).items()},
                               label="class"),
            cost=Cost.from_dict(d["cost"]) if d.get("cost") is not None else None,
            steady=steady, pool_startup_s=d.get("pool_startup_s"),
        )

    # --- per-task data: the trace and the task table -----------------------------------------------------

    @property
    def _data(self) -> TaskData:
        if self.per_task is None:
            raise ValueError(f"this Result ({self.model} under {self.strategy}) was read from JSON: it holds the "
                             "figures only, no trace or per-task data")
        return self.per_task

    @property
    def trace(self) -> Trace:
        """Every step record of the run (see `trace`).

        Raises:
            ValueError: a summary-only run kept none.
        """
        if self._data.summary:
            raise ValueError(f"this Result ({self.model} under {self.strategy}) is of a summary-only run: its "
                             "records were folded into the figures and not kept; simulate without summary_only")
        return self._data.trace

    @property
    def calls(self) -> CallTable | None:
        """Every call attempt (None without services)."""
        return self._data.calls

    @property
    def arrival(self) -> np.ndarray:
        """Per task: its arrival time (seconds)."""
        return self._data.arrival

    @property
    def done(self) -> np.ndarray:
        """Per task: when it finished, completed or failed (NaN: unfinished)."""
        return self._data.done

    @property
    def task_type(self) -> np.ndarray:
        """Per task: the code of its type (an index into `type_names`)."""
        return self._data.task_type

    @property
    def type_names(self) -> tuple[str, ...]:
        """The task types' names, by code."""
        return self._data.type_names

    @property
    def parallel_types(self) -> np.ndarray:
        """Per task type: whether it has parallel branches."""
        return self._data.parallel_types

    @property
    def completed_tasks(self) -> np.ndarray:
        """Per task: whether it completed (neither failed nor unfinished)."""
        return self._data.completed

    @property
    def events(self) -> int:
        """Events the engine processed (0 for a real run, and for the fast path, which has none)."""
        return self._data.events

    @property
    def engine(self) -> str:
        """What computed the run: "des" (the discrete-event engine), "fast" (the fast path), "" (a real run)."""
        return self._data.engine

    def to_frame(self) -> pd.DataFrame:
        """One row per task: type, arrival, completion, latency and its computing/waiting/queued split."""
        import pandas as pd

        split = task_split(self.trace, self.arrival.size, overlapping(self.parallel_types, self.task_type))
        names = np.array(self.type_names or ["type0"], dtype=object)
        return pd.DataFrame({
            "task": np.arange(self.arrival.size), "type": names[self.task_type],
            "arrival": self.arrival, "done": self.done, "latency": self.done - self.arrival,
            **{name: split[code] for code, name in enumerate(STATES)},
        })

    def concurrency_series(self) -> pd.DataFrame:
        """The step function of tasks in flight and of those computing / waiting / queued, as a DataFrame.

        Row k holds the counts from `time[k]` until the next row's time.
        """
        import pandas as pd

        flight_times, flight = in_flight_steps(self.arrival, self.done)
        _seg_task, t0, t1, state = state_segments(self.trace)
        # a row wherever any count changes: arrivals, completions and every change of a task's state
        times = np.unique(np.concatenate([flight_times, t0, t1]))
        at = np.searchsorted(flight_times, times, side="right") - 1
        in_flight = np.where(at >= 0, flight[np.maximum(at, 0)], 0)
        columns = {"time": times, "in_flight": in_flight}
        for code, name in enumerate(STATES):
            mask = state == code
            columns[name] = step_count(times, t0[mask], t1[mask])
        return pd.DataFrame(columns)

    def queue_series(self) -> pd.DataFrame:
        """Items queued for each pipeline stage over time (waiting to enter it, in its queue, or collecting a
        batch): a long DataFrame with columns time, stage, queued."""
        import pandas as pd

        tr = self.trace
        frames = []
        for rid, resource in enumerate(tr.resources):
            if resource.kind != "stage":
                continue
            mine = (tr.resource == rid) & ((tr.kind == K_STAGE) | (tr.kind == K_BATCH))
            t0, t1 = tr.enqueue[mine], tr.start[mine]
            times = np.unique(np.concatenate([t0, t1]))
            frames.append(pd.DataFrame({"time": times, "stage": resource.name,
                                        "queued": step_count(times, t0, t1)}))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["time", "stage", "queued"])


def flat_metrics(d: Mapping[str, Any]) -> dict[str, float]:
    """The flat metrics (`Result.metrics()`) of a `Result.to_dict()` object.

    Raises:
        ValueError: as `Result.from_dict`.
    """
    return Result.from_dict(d).metrics()
