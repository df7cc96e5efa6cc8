"""The parts of a run's figures as frozen statistics (trio's `statistics()` snapshots): each with `to_dict()`
giving exactly its `run --json` object and `from_dict` reading one back.

* `Latency` (mean, p50, p95, p99, max), `Concurrency` (mean and peak in flight, and the mean computing /
  waiting / queued / throttled), `TimeSplit` (task, wait, queue, throttled seconds per task), `Cost`;
* per name, in a `StatsTable` (a read-only mapping with `to_dict()` and `to_frame()`): `ResourceStats` by
  `trace.ResourceId`, `ServiceStats` by service, `StageStats` by stage, `ClassStats` by task class.

`metrics` computes them (its docstring has the definitions); `results.Result` holds them. Read from
`run --replications`' JSON, the figures are means over the replications, so counts may be fractional.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, TypeVar

from .states import STATES
from .trace import ResourceId

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ClassStats", "Concurrency", "Cost", "Latency", "ResourceStats", "ServiceStats", "StageStats",
           "StatsTable", "TimeSplit"]

# a field with this metadata is left out of `to_dict()` when None (the key exists only when it applies)
_OPTIONAL = {"optional": True}


def _plain(part: Any) -> dict[str, Any]:
    """The JSON object of a flat part: its fields in order, optional ones only when set."""
    out = {}
    for f in fields(part):
        value = getattr(part, f.name)
        if value is None and f.metadata.get("optional"):
            continue
        out[f.name] = value.to_dict() if hasattr(value, "to_dict") else value
    return out


def _read(cls: Any, d: Mapping[str, Any], where: str, **parsed: Any) -> Any:
    """`cls` from its JSON object: every field that is not optional must be there (`parsed` overrides).

    Raises:
        ValueError: naming the missing key and where it was expected.
    """
    if not isinstance(d, Mapping):
        raise ValueError(f"{where}: expected an object, got {type(d).__name__}")
    values = {}
    for f in fields(cls):
        if f.name in parsed:
            values[f.name] = parsed[f.name]
        elif f.name in d:
            values[f.name] = d[f.name]
        elif not f.metadata.get("optional"):
            raise ValueError(f"{where}: missing {f.name!r}")
    return cls(**values)


def _number(value: Any) -> float:
    """A figure that is a number whenever it exists: JSON's null (no value) reads as NaN."""
    return math.nan if value is None else value


@dataclass(frozen=True)
class Latency:
    """Task latency (completion − arrival, over completed tasks), seconds; NaN when no task completed."""

    mean: float
    p50: float
    p95: float
    p99: float
    max: float

    def to_dict(self) -> dict[str, float]:
        return _plain(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "latency") -> Latency:
        """Raises: ValueError naming a missing figure."""
        numbers = {f.name: _number(d[f.name]) for f in fields(cls) if f.name in d} if isinstance(d, Mapping) else {}
        return _read(cls, d, where, **numbers)


@dataclass(frozen=True)
class Concurrency:
    """Tasks in flight: the time-weighted `mean` and the `peak`, and the mean number in each state (they add
    up to `mean`). JSON keys: `mean`, `peak`, `computing_mean`, `waiting_mean`, `queued_mean`, `throttled_mean`.
    """

    mean: float
    peak: int
    computing: float
    waiting: float
    queued: float
    throttled: float

    def by_state(self) -> dict[str, float]:
        """The mean number in each state, by the names of `states.STATES`."""
        return {state: getattr(self, state) for state in STATES}

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "peak": self.peak, **{f"{k}_mean": v for k, v in self.by_state().items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "concurrency") -> Concurrency:
        """Raises: ValueError naming a missing figure."""
        keys = {"mean": "mean", "peak": "peak", **{s: f"{s}_mean" for s in STATES}}
        missing = [key for key in keys.values() if key not in d]
        if missing:
            raise ValueError(f"{where}: missing {missing[0]!r}")
        return cls(**{name: d[key] for name, key in keys.items()})


@dataclass(frozen=True)
class TimeSplit:
    """Mean seconds per task computing (`task`), waiting, queued and throttled; they add up to the mean
    latency."""

    task: float
    wait: float
    queue: float
    throttled: float

    @property
    def total(self) -> float:
        """The four added up: the mean latency (to rounding)."""
        return self.task + self.wait + self.queue + self.throttled

    def to_dict(self) -> dict[str, float]:
        return _plain(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "time_split") -> TimeSplit:
        """Raises: ValueError naming a missing figure."""
        return _read(cls, d, where)


@dataclass(frozen=True)
class ResourceStats:
    """One resource: `capacity` (slots; None when unbounded), `utilization` = mean_busy / capacity (None when
    unbounded), `mean_busy` (time-averaged busy slots), `mean_wait` (seconds queued per task), `mean_queue`
    (time-averaged number queued)."""

    capacity: int | None
    utilization: float | None
    mean_busy: float
    mean_wait: float
    mean_queue: float

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "resource") -> ResourceStats:
        """Raises: ValueError naming a missing figure."""
        return _read(cls, d, where)


@dataclass(frozen=True)
class ServiceStats:
    """One service: `calls`, `requests` (attempts) by outcome (`ok`, `rate_limited`, `server_error`, `timeout`,
    `rejected`: `services.OUTCOMES`), `retries`, `failed` calls, `tokens` of accepted attempts and
    `tokens_wasted` on those that failed; with prices, the `cost` of accepted attempts and the `cost_wasted`
    on failed ones; when requests were batched, `batches` (a request in a batch of k counts 1/k),
    `batch_size_mean` and `batch_size_max`. The optional figures are None (and not in JSON) otherwise."""

    calls: int
    requests: int
    ok: int
    rate_limited: int
    server_error: int
    timeout: int
    rejected: int
    retries: int
    failed: int
    tokens: float
    tokens_wasted: float
    cost: float | None = field(default=None, metadata=_OPTIONAL)
    cost_wasted: float | None = field(default=None, metadata=_OPTIONAL)
    batches: float | None = field(default=None, metadata=_OPTIONAL)
    batch_size_mean: float | None = field(default=None, metadata=_OPTIONAL)
    batch_size_max: int | None = field(default=None, metadata=_OPTIONAL)

    def to_dict(self) -> dict[str, float]:
        return _plain(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "service") -> ServiceStats:
        """Raises: ValueError naming a missing figure."""
        return _read(cls, d, where)


@dataclass(frozen=True)
class StageStats:
    """One pipeline stage: `items` through it, `throughput` (items/s over T_total), `batches` run and their
    mean size, `workers`, their `utilization`, the time-averaged items queued for it (`mean_queue`) and the
    mean seconds each waited (`mean_wait`)."""

    items: float
    throughput: float
    batches: int
    batch_size_mean: float
    workers: int
    utilization: float
    mean_queue: float
    mean_wait: float

    def to_dict(self) -> dict[str, float]:
        return _plain(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "stage") -> StageStats:
        """Raises: ValueError naming a missing figure."""
        return _read(cls, d, where)


@dataclass(frozen=True)
class ClassStats:
    """One task class: `tasks`, `completed`, `failed`, its own `t_total` (first arrival to last finish of the
    class), `throughput`, `goodput` and `latency`; with a deadline, the `deadline` (seconds after arrival) and
    the tasks that missed it (`deadline_missed`: late, failed or unfinished); with prices, the `cost` of its
    own calls. The optional figures are None (and not in JSON) otherwise."""

    tasks: int
    completed: int
    failed: int
    t_total: float
    throughput: float
    goodput: float
    latency: Latency
    deadline: float | None = field(default=None, metadata=_OPTIONAL)
    deadline_missed: int | None = field(default=None, metadata=_OPTIONAL)
    cost: float | None = field(default=None, metadata=_OPTIONAL)

    def to_dict(self) -> dict[str, Any]:
        return _plain(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "class") -> ClassStats:
        """Raises: ValueError naming a missing figure."""
        if "latency" not in d:
            raise ValueError(f"{where}: missing 'latency'")
        return _read(cls, d, where, latency=Latency.from_dict(d["latency"], f"{where}.latency"))


@dataclass(frozen=True)
class Cost:
    """What a run cost (models with prices): `usage` of accepted attempts, `capacity` (priced slots, instances
    and workers × T_total), their `total`, and the usage `wasted` on attempts that failed."""

    total: float
    usage: float
    capacity: float
    wasted: float

    def to_dict(self) -> dict[str, float]:
        return _plain(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "cost") -> Cost:
        """Raises: ValueError naming a missing figure."""
        return _read(cls, d, where)


K = TypeVar("K", str, ResourceId)
V = TypeVar("V", ResourceStats, ServiceStats, StageStats, ClassStats)


class StatsTable(Mapping[K, V]):
    """Statistics by name (per resource, service, stage or task class): a read-only mapping in a stable order,
    with `to_dict()` (JSON, keys as strings) and `to_frame()` (one row per name, `label` naming the index)."""

    __slots__ = ("_label", "_rows")

    def __init__(self, rows: Mapping[K, V] | None = None, *, label: str = "name") -> None:
        self._rows: dict[K, V] = dict(rows or {})
        self._label = label

    @property
    def label(self) -> str:
        """What a row is (`resource`, `service`, `stage`, `class`): the name of the frame's index."""
        return self._label

    def __getitem__(self, key: K) -> V:
        return self._rows[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"StatsTable({self._rows!r}, label={self.label!r})"

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {str(k): v.to_dict() for k, v in self._rows.items()}

    def to_frame(self) -> pd.DataFrame:
        """One row per name, a column per figure (a nested one flattened: `latency_p99`); a figure a row lacks
        (an optional one) is NaN."""
        import pandas as pd

        rows = [{f"{k}_{m}" if isinstance(v, dict) else k: x
                 for k, v in entry.to_dict().items() for m, x in (v.items() if isinstance(v, dict) else [(k, v)])}
                for entry in self._rows.values()]
        index = pd.Index([str(k) for k in self._rows], name=self.label)
        return pd.DataFrame.from_records(rows, index=index) if rows else pd.DataFrame(index=index)
