"""The Trace: one flat record per step occurrence, the single source every metric is computed from.

A record says that `task` waited for `resource` from `enqueue` to `start`, then was busy from `start` to
`end`; `cpu_s` is the CPU time a cpu record consumed (less than end - start when the step was preempted or
shared a core). Record kinds:

| kind    | enqueue .. start                 | start .. end                          |
| ------- | -------------------------------- | ------------------------------------- |
| cpu     | waiting for the loop/GIL/core/executor | running (cpu_s of it on a CPU)  |
| io      | waiting for the loop/GIL to issue it | waiting on the outside world      |
| call    | queued at the service            | being served                          |
| use     | waiting for a pool slot          | holding the slot (inner steps run)    |
| admit   | waiting for admission (limit, worker) | dispatch to a worker             |
| resume  | waiting for the loop/GIL to resume | loop/interpreter overhead (cpu_s)   |
| join    | -                                | waiting for parallel branches        |

The simulator and the real runner both fill a `TraceBuilder`; `Trace` holds numpy columns.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

import numpy as np

__all__ = ["KINDS", "RunOutput", "Trace", "TraceBuilder"]

KINDS = ("cpu", "io", "call", "use", "admit", "resume", "join")
K_CPU, K_IO, K_CALL, K_USE, K_ADMIT, K_RESUME, K_JOIN = range(len(KINDS))


class TraceBuilder:
    """Appends records into compact columns (array.array), cheap enough for millions of records."""

    __slots__ = ("task", "step", "kind", "resource", "enqueue", "start", "end", "cpu_s", "resources", "_ids")

    def __init__(self) -> None:
        self.task, self.step = array("q"), array("i")
        self.kind, self.resource = array("b"), array("h")
        self.enqueue, self.start, self.end, self.cpu_s = array("d"), array("d"), array("d"), array("d")
        self.resources: list[str] = []
        self._ids: dict[str, int] = {}

    def resource_id(self, name: str | None) -> int:
        """The column code of a resource name (-1 for none)."""
        if name is None:
            return -1
        rid = self._ids.get(name)
        if rid is None:
            rid = self._ids[name] = len(self.resources)
            self.resources.append(name)
        return rid

    def add(self, task: int, step: int, kind: int, resource: int,
            enqueue: float, start: float, end: float, cpu_s: float = 0.0) -> None:
        """Append one record (times in seconds)."""
        self.task.append(task)
        self.step.append(step)
        self.kind.append(kind)
        self.resource.append(resource)
        self.enqueue.append(enqueue)
        self.start.append(start)
        self.end.append(end)
        self.cpu_s.append(cpu_s)

    def build(self) -> Trace:
        """Freeze into numpy columns; the builder cannot grow afterwards (appending raises BufferError).

        The columns share the builder's memory rather than copy it: a million-task trace is ~200 MB.
        """
        def col(a: array, dtype: str) -> np.ndarray:
            return np.frombuffer(a, dtype=dtype) if len(a) else np.zeros(0, dtype=dtype)
        return Trace(col(self.task, "i8"), col(self.step, "i4"), col(self.kind, "i1"), col(self.resource, "i2"),
                     col(self.enqueue, "f8"), col(self.start, "f8"), col(self.end, "f8"), col(self.cpu_s, "f8"),
                     tuple(self.resources))


@dataclass(frozen=True, eq=False)
class Trace:
    """Columns of step records (see the module docstring); `resources` names the resource codes."""

    task: np.ndarray
    step: np.ndarray
    kind: np.ndarray
    resource: np.ndarray
    enqueue: np.ndarray
    start: np.ndarray
    end: np.ndarray
    cpu_s: np.ndarray
    resources: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.task.size)

    def to_frame(self):  # noqa: ANN201 - pandas is imported lazily
        """The records as a pandas DataFrame with readable kind and resource names."""
        import pandas as pd

        names = np.array([*self.resources, ""], dtype=object)
        return pd.DataFrame({
            "task": self.task, "step": self.step,
            "kind": pd.Categorical.from_codes(self.kind, KINDS),
            "resource": names[self.resource],
            "enqueue": self.enqueue, "start": self.start, "end": self.end, "cpu_s": self.cpu_s,
        })


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
