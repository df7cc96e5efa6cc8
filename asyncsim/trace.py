"""The Trace: one flat record per step occurrence, the single source every metric is computed from.

A record says that `task` waited for `resource` from `enqueue` to `start`, then was busy from `start` to
`end`; `cpu_s` is the CPU time a cpu record consumed (less than end - start when the step was preempted or
shared a core). Record kinds:

| kind    | enqueue .. start                 | start .. end                          |
| ------- | -------------------------------- | ------------------------------------- |
| cpu     | waiting for the loop/GIL/core/executor | running (cpu_s of it on a CPU)  |
| io      | - (a wait to issue it is a resume record) | waiting on the outside world |
| call    | queued at the service            | being served (cpu_s: its batch's size, batching services) |
| use     | waiting for a pool slot          | holding the slot (inner steps run)    |
| admit   | waiting for admission (limit, worker) | dispatch to a worker             |
| resume  | waiting for the loop/GIL to resume | loop/interpreter overhead (cpu_s)   |
| throttle| waiting for rate-limit tokens or backing off before a retry | -              |
| stage   | queued for a pipeline stage (queue, worker, batch) | a worker runs its steps (cpu_s: batch size) |
| batch   | queued for a pipeline stage      | waiting while its batch runs (recorded on another item) |

Calls also go to a `CallLog`: one row per attempt with its outcome, tokens and batch size.

A record's resource is a `ResourceId`: its kind and, for the kinds a model names, the name (`pool:db`,
`service:llm`, `stage:embed`; `loop`, `gil`, `cores`, `executor`, `limit` and `workers` stand alone). The
executors pass the string form to `TraceBuilder.resource_id`; it is parsed there, once, and metrics, bounds
and reports compare kinds, never prefixes.

The simulator and the real runner both fill a `TraceBuilder`; `Trace` holds numpy columns.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

import numpy as np

__all__ = ["ADMISSION", "CHUNK", "CPU_RUNNERS", "CallLog", "CallTable", "KINDS", "ResourceId", "ResourceKind",
           "RunOutput", "Trace", "TraceBuilder"]

KINDS = ("cpu", "io", "call", "use", "admit", "resume", "throttle", "stage", "batch")
K_CPU, K_IO, K_CALL, K_USE, K_ADMIT, K_RESUME, K_THROTTLE, K_STAGE, K_BATCH = range(len(KINDS))

ResourceKind = Literal["limit", "workers", "loop", "gil", "cores", "executor",
                       "pool", "service", "limiter", "backoff", "stage"]
_KINDS: tuple[str, ...] = get_args(ResourceKind)
_NAMED: frozenset[ResourceKind] = frozenset(("pool", "service", "limiter", "backoff", "stage"))  # the model names them
ADMISSION: frozenset[ResourceKind] = frozenset(("limit", "workers"))  # the strategy's cap on tasks in flight
CPU_RUNNERS: frozenset[ResourceKind] = frozenset(("loop", "gil", "cores", "executor"))  # where a CPU step runs


@dataclass(frozen=True, repr=False)
class ResourceId:
    """A resource of a trace: its `kind` and, for pools, services, client limiters, back-offs and stages, the
    model's `name` for it. `str()` gives the name used in JSON and tables (`pool:db`, `loop`).

    Raises:
        ValueError: (construction) an unknown kind, a named kind without a name or a lone kind with one.
    """

    kind: ResourceKind
    name: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"resource kind must be one of {', '.join(_KINDS)}: {self.kind!r}")
        if (self.kind in _NAMED) != (self.name is not None) or self.name == "":
            need = "needs a name (kind:NAME)" if self.kind in _NAMED else "takes no name"
            raise ValueError(f"resource kind {self.kind!r} {need}: {self!s}")

    @classmethod
    def parse(cls, text: str) -> ResourceId:
        """The identity of `pool:db`, `service:llm`, `loop` (the form `str()` gives back).

        Raises:
            ValueError: naming the text, when it is no resource's name.
        """
        kind, sep, name = text.partition(":")
        try:
            return cls(cast("ResourceKind", kind), name if sep else None)  # the kind is checked on construction
        except ValueError as exc:
            raise ValueError(f"not a resource name: {text!r} ({exc})") from None

    def __str__(self) -> str:
        return self.kind if self.name is None else f"{self.kind}:{self.name}"

    def __repr__(self) -> str:
        return f"ResourceId({self.kind!r})" if self.name is None else f"ResourceId({self.kind!r}, {self.name!r})"


# One record as `add` packs it: the columns' types in native byte order, without padding (47 bytes).
_FIELDS = (("task", "i8"), ("step", "i4"), ("kind", "i1"), ("resource", "i2"),
           ("enqueue", "f8"), ("start", "f8"), ("end", "f8"), ("cpu_s", "f8"))
_RECORD = np.dtype(list(_FIELDS))
_PACK = struct.Struct("=qibhdddd").pack
CHUNK = 1 << 14  # records a builder packs before it splits them into the columns (or folds them), ~770 kB
_BUFFER_BYTES = CHUNK * _RECORD.itemsize  # so every flush but the last holds exactly CHUNK records


class TraceBuilder:
    """Appends records into compact columns, cheap enough for millions of records.

    `add` packs a record into a byte buffer (one C call rather than eight appends: it runs millions of
    times); numpy splits a full buffer into the columns.
    """

    __slots__ = ("_buffer", "_columns", "resources", "_ids", "fold")

    def __init__(self, fold: Callable[[Trace], None] | None = None) -> None:
        """`fold`, when given, is handed each CHUNK of records (as a Trace, in the order they were added) instead
        of keeping them: a summary-only run, whose built trace is empty."""
        self.fold = fold
        self._buffer = bytearray()
        self._columns = {name: array(code) for (name, _), code in zip(_FIELDS, "qibhdddd", strict=True)}
        self.resources: list[ResourceId] = []
        self._ids: dict[str, int] = {}

    def resource_id(self, name: str | None) -> int:
        """The column code of a resource, given by its name (`pool:db`, `loop`; see `ResourceId`); -1 for none.

        Raises:
            ValueError: when `name` is no resource's name.
        """
        if name is None:
            return -1
        rid = self._ids.get(name)
        if rid is None:
            resource = ResourceId.parse(name)  # the one place a resource's name is read
            rid = self._ids[name] = len(self.resources)
            self.resources.append(resource)
        return rid

    def add(self, task: int, step: int, kind: int, resource: int,
            enqueue: float, start: float, end: float, cpu_s: float = 0.0) -> None:
        """Append one record (times in seconds)."""
        buffer = self._buffer
        buffer += _PACK(task, step, kind, resource, enqueue, start, end, cpu_s)
        if len(buffer) >= _BUFFER_BYTES:
            self._flush()

    def _flush(self) -> None:
        records = np.frombuffer(self._buffer, dtype=_RECORD)
        if self.fold is not None:
            if records.size:
                col = {name: records[name].copy() for name, _ in _FIELDS}  # the buffer is reused at once
                self.fold(Trace(task=col["task"], step=col["step"], kind=col["kind"], resource=col["resource"],
                                enqueue=col["enqueue"], start=col["start"], end=col["end"], cpu_s=col["cpu_s"],
                                resources=tuple(self.resources)))
            del records
            self._buffer.clear()
            return
        for name, column in self._columns.items():
            column.frombytes(records[name].tobytes())
        del records  # the buffer cannot be cleared while numpy views it
        self._buffer.clear()

    def build(self) -> Trace:
        """Freeze into numpy columns; call it once, when every record is in.

        The columns share the builder's memory rather than copy it (a million-task trace is ~200 MB), so
        the builder cannot grow afterwards.
        """
        self._flush()

        def col(name: str) -> np.ndarray:
            a = self._columns[name]
            dtype = _RECORD[name]
            return np.frombuffer(a, dtype=dtype) if len(a) else np.zeros(0, dtype=dtype)
        return Trace(task=col("task"), step=col("step"), kind=col("kind"), resource=col("resource"),
                     enqueue=col("enqueue"), start=col("start"), end=col("end"), cpu_s=col("cpu_s"),
                     resources=tuple(self.resources))


@dataclass(frozen=True, eq=False)
class Trace:
    """Columns of step records (see the module docstring); `resources[code]` is the resource of a code."""

    task: np.ndarray
    step: np.ndarray
    kind: np.ndarray
    resource: np.ndarray
    enqueue: np.ndarray
    start: np.ndarray
    end: np.ndarray
    cpu_s: np.ndarray
    resources: tuple[ResourceId, ...]

    def __len__(self) -> int:
        return int(self.task.size)

    def records(self, lo: int, hi: int) -> Trace:
        """Records lo..hi (views, no copy)."""
        return Trace(self.task[lo:hi], self.step[lo:hi], self.kind[lo:hi], self.resource[lo:hi], self.enqueue[lo:hi],
                     self.start[lo:hi], self.end[lo:hi], self.cpu_s[lo:hi], self.resources)

    def chunks(self) -> Iterator[Trace]:
        """The records in CHUNKs, in order: the pieces a summary-only run folds as a builder makes them."""
        for lo in range(0, len(self), CHUNK):
            yield self.records(lo, lo + CHUNK)

    def code(self, resource: ResourceId) -> int:
        """The code of `resource` in the `resource` column (-1 when no record names it)."""
        return self.resources.index(resource) if resource in self.resources else -1

    def to_frame(self):  # noqa: ANN201 - pandas is imported lazily
        """The records as a pandas DataFrame with readable kind and resource names."""
        import pandas as pd

        names = np.array([*map(str, self.resources), ""], dtype=object)
        return pd.DataFrame({
            "task": self.task, "step": self.step,
            "kind": pd.Categorical.from_codes(self.kind, KINDS),
            "resource": names[self.resource],
            "enqueue": self.enqueue, "start": self.start, "end": self.end, "cpu_s": self.cpu_s,
        })


_CALL_COLUMNS = (("task", "i8"), ("step", "i4"), ("service", "i2"), ("attempt", "i2"), ("outcome", "i1"),
                 ("sent", "f8"), ("end", "f8"), ("tokens_in", "f8"), ("tokens_out", "f8"), ("size", "i4"))


class CallLog:
    """One row per call attempt: task, step, service code, attempt (0 first), outcome code (services.OUTCOMES),
    sent and end times, tokens in and out, and the number of items served with it (its batch's size).
    """

    __slots__ = ("_rows",)

    def __init__(self) -> None:
        self._rows: list[tuple[Any, ...]] = []

    def add(self, task: int, step: int, service: int, attempt: int, outcome: int, sent: float, end: float,
            tokens_in: float, tokens_out: float, size: int) -> None:
        """Append one attempt."""
        self._rows.append((task, step, service, attempt, outcome, sent, end, tokens_in, tokens_out, size))

    def build(self) -> CallTable:
        """Freeze into numpy columns."""
        columns = list(zip(*self._rows, strict=True)) if self._rows else [()] * len(_CALL_COLUMNS)
        return CallTable(**{name: np.array(col, dtype=code) for (name, code), col in
                            zip(_CALL_COLUMNS, columns, strict=True)})


@dataclass(frozen=True, eq=False)
class CallTable:
    """The call attempts of a run as numpy columns (see `CallLog`)."""

    task: np.ndarray
    step: np.ndarray
    service: np.ndarray
    attempt: np.ndarray
    outcome: np.ndarray
    sent: np.ndarray
    end: np.ndarray
    tokens_in: np.ndarray
    tokens_out: np.ndarray
    size: np.ndarray

    def __len__(self) -> int:
        return int(self.task.size)


@dataclass(frozen=True, eq=False)
class RunOutput:
    """What one execution (simulated or real) produced: the trace and the per-task table.

    `done` is NaN for tasks that never finished (an interrupted run); `errors` maps a failed task to its error.
    """

    trace: Trace
    arrival: np.ndarray
    done: np.ndarray
    task_type: np.ndarray
    failed: np.ndarray
    events: int
    capacities: dict[str, int | None]
    errors: dict[int, str] | None = None
    interrupted: bool = False
    calls: CallTable | None = None
    pool_startup_s: float | None = None  # starting the process pool, from its creation (None: no pool)
    engine: str = ""  # what computed it: "des" (the event engine) or "fast" (sim.fast); "" for a real run
