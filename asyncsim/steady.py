"""Steady state: where a run's transient ends (MSER-5), and whether an open workload has a steady state at all.

A run starts empty: its first tasks wait less than later ones (after a burst, more), so latency percentiles
and throughput over the whole run mix the transient in. The rules, in the order a run is judged:

* **offered load** ρ (`bounds.offered_load`) = the largest capacity bound on T_total (CPU on the usable cores,
  the concurrency cap, a pool, a service's slots or batcher, a rate limit, a stage's workers — not the longest
  task or the last arrival, which are not rates) divided by the span of the arrivals (last − first). The bound
  is the least time that limit needs to drain the run's work, so ρ ≥ 1 says work arrives faster than it can
  drain: the queue grows without bound and every latency percentile grows with the run's length.
  **Unstable.** (A rate limit's bound leaves out its burst, so ρ is the load beyond the burst.)
* **no steady state detected**: MSER-5's minimum over the first half of the run lies at the half's end — the
  latencies still trend at mid-run and truncation would drop more than half the run (only judged with at
  least `MIN_BATCHES` batches of 5 completed tasks: shorter runs cannot tell a trend from noise). It is a
  heuristic: on M/M/1 at ρ = 0.5–0.9 it fired for 1–2 of 40 seeds of 1000 tasks and none of 40 of 5000; at
  ρ = 1.1 for 14 of 40 of 1000 tasks and 29 of 40 of 5000 (there the load rule speaks first).
* **closed** workloads (`closed:` users): a finite population cannot queue without bound, so no load is
  computed; they still have a transient, and the MSER-5 check applies.
* **batch** arrivals (all at one instant, or per-class arrivals that all are): no steady state to speak of;
  the verdict is None and a warm-up cannot apply.

The warm-up (`warmup=`): None keeps every task; a number of seconds of the run's clock (the time arrivals are
given in, from 0) drops the tasks arriving before it; "auto" takes MSER-5's truncation point over the
completed tasks' latencies in order of arrival and turns it into a time, the arrival of the first task kept
(with ties at that instant, a few more tasks are kept than MSER-5 chose). `metrics.compute_result` applies it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

from .errors import ModelError
from .scenario import Scenario
from .spec import Closed
from .trace import RunOutput

__all__ = ["MIN_BATCHES", "Steady", "Warmup", "check_warmup", "mser5", "steady_state", "transient"]

Warmup = float | str | None  # seconds, "auto" (MSER-5) or None (keep every task)

_BATCH = 5  # observations per batch mean (MSER-5)
MIN_BATCHES = 40  # below this, a minimum at mid-run is as likely noise as a trend (see `transient`)


def _mser(values: np.ndarray, batch: int = _BATCH) -> tuple[int, bool]:
    """MSER-`batch`: (observations to drop, whether the minimum lies at the end of the searched first half).

    Batch means Y_1..Y_b of `batch` consecutive observations (an incomplete last batch is left out); for each
    d in 0..⌊b/2⌋ the statistic is Σ_{j>d} (Y_j − Ȳ_d)² / (b − d)², Ȳ_d the mean of the batches kept; the
    smallest d minimising it wins (White 1997; White, Cobb & Spratt 2000).
    """
    b = values.size // batch
    half = min(b // 2, b - 2)  # at least two batches kept: one alone has no spread and always "wins"
    if half < 1:
        return 0, False
    means = values[: b * batch].reshape(b, batch).mean(axis=1)
    means = means - means.mean()  # centred: the running sums below then lose no precision
    kept = np.arange(b, 0, -1, dtype=float)  # b − d batches kept, d = 0..b−1
    s1 = np.cumsum(means[::-1])[::-1]
    s2 = np.cumsum((means * means)[::-1])[::-1]
    stat = (s2 - s1 * s1 / kept)[: half + 1] / (kept * kept)[: half + 1]
    # the smallest d within rounding of the minimum: after a step to a constant level every later d is 0 ± 1e-17
    d = int(np.flatnonzero(stat <= stat.min() + 1e-12 * np.abs(stat).max())[0])
    return d * batch, d == half


def mser5(values: Sequence[float] | np.ndarray) -> int:
    """How many observations MSER-5 drops from the start of `values` (a multiple of 5; 0 for fewer than 15).

    Batch means of 5 observations; of the first half of the batches, drop the d that minimise the squared
    standard error of the mean of the rest, Σ_{j>d} (Y_j − Ȳ_d)² / (b − d)² (White 1997).
    """
    return _mser(np.asarray(values, dtype=float))[0]


def transient(arrival: np.ndarray, done: np.ndarray, failed: np.ndarray) -> tuple[float, int, bool]:
    """MSER-5 over the completed tasks' latencies in order of arrival: (warm-up seconds, the arrival of the
    first task kept — 0 when nothing is dropped; completed tasks dropped; whether the latencies still trend
    at mid-run, judged with at least `MIN_BATCHES` batches)."""
    ok = ~np.isnan(done) & ~failed
    order = np.argsort(arrival[ok], kind="stable")
    times, latency = arrival[ok][order], (done - arrival)[ok][order]
    dropped, at_edge = _mser(latency)
    warmup_s = float(times[dropped]) if dropped else 0.0
    return warmup_s, int((times < warmup_s).sum()), at_edge and latency.size >= MIN_BATCHES * _BATCH


@dataclass(frozen=True)
class Steady:
    """Whether a run reached a steady state, and the warm-up left out of its latency figures and throughput.

    `warmup_s`: tasks arriving before this time (the run's clock) are left out (0: none); `rule` says who chose
    it: "MSER-5", "given" or "none"; `dropped`: completed tasks left out; `transient_s`: the warm-up MSER-5
    finds, applied or not; `load`: the offered load ρ of the `binding` limit (None for closed workloads);
    `stable`: the run reached a steady state; `reason`: why, in words.
    """

    warmup_s: float
    rule: str
    dropped: int
    transient_s: float
    load: float | None
    binding: str | None
    stable: bool
    reason: str

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Steady:
        """The verdict of a `to_dict()` object (a saved run's `steady`)."""
        return cls(**{f.name: d[f.name] for f in fields(cls)})

    def to_dict(self) -> dict[str, Any]:
        """The `steady` object of `run --json`."""
        return asdict(self)

    @property
    def overloaded(self) -> bool:
        """Unstable because work arrives faster than its binding limit drains it (ρ ≥ 1)."""
        return self.load is not None and self.load >= 1

    def summary(self) -> str:
        """One line: 'steady state: warm-up 12.3 s dropped (MSER-5), offered load 63% of pool db'."""
        load = "" if self.load is None else f"offered load {_percent(self.load)} of {self.binding}"
        if self.overloaded:
            return (f"unstable: the queue grows without bound ({load}); latency percentiles grow with the run's "
                    "length and are not an answer")
        if not self.stable:
            return f"no steady state detected: {self.reason}"
        if self.rule == "none":
            found = f"MSER-5 finds a {self.transient_s:.3g} s transient" if self.transient_s else "MSER-5 finds none"
            warm = f"no warm-up dropped ({found})"
        else:
            warm = f"warm-up {self.warmup_s:.3g} s dropped ({self.rule}, {self.dropped:.0f} tasks)"
        return f"steady state: {warm}, {load or self.reason}"


def check_warmup(warmup: Warmup, arrivals: np.ndarray | None = None) -> None:
    """Refuse a warm-up that is not None, "auto" or seconds ≥ 0, or (given the arrivals) that drops every task.

    Raises:
        ModelError: naming the value (and the last arrival).
    """
    if warmup is None or warmup == "auto":
        return
    if isinstance(warmup, bool) or not isinstance(warmup, int | float) or not math.isfinite(warmup) or warmup < 0:
        raise ModelError(f"warmup: must be 'auto' or seconds >= 0 (got {warmup!r})")
    if arrivals is not None and arrivals.size and warmup > float(arrivals.max()):
        raise ModelError(f"warmup: {warmup:g} s drops every task (the last arrives at {float(arrivals.max()):.4g} s)")


def steady_state(scenario: Scenario, out: RunOutput, warmup: Warmup = None,
                 load: tuple[float, str] | None = None) -> tuple[float, Steady | None]:
    """The warm-up to apply (seconds) and the verdict for one execution of `scenario` (None for batch arrivals).

    `load` is the scenario's offered load and the limit it presses (`bounds.offered_load`; None when closed).

    Raises:
        ModelError: when `warmup` is not None, "auto" or seconds ≥ 0.
        ValueError: when open arrivals come without their `load`.
    """
    check_warmup(warmup)
    span_s = None if scenario.arrivals is None else float(np.ptp(scenario.arrivals))  # None: closed
    if span_s == 0:
        return (float(warmup) if isinstance(warmup, int | float) else 0.0), None
    if span_s is not None and load is None:
        raise ValueError("open arrivals need their offered load (bounds.offered_load)")
    found, found_dropped, trending = transient(out.arrival, out.done, out.failed)
    if warmup == "auto":
        warmup_s, rule, dropped = found, "MSER-5", found_dropped
    else:
        warmup_s = float(warmup or 0.0)
        rule = "given" if warmup_s > 0 else "none"
        ok = ~np.isnan(out.done) & ~out.failed
        dropped = int((ok & (out.arrival < warmup_s)).sum())
    if rule == "MSER-5" and not dropped:  # the tasks it dropped all arrived with the first one kept
        warmup_s, rule = 0.0, "none"
    rho, binding = (None, None) if load is None else load
    stable = not trending and (rho is None or rho < 1)
    if rho is not None and rho >= 1:
        reason = f"the queue grows without bound: offered load {_percent(rho)} of {binding}"
    elif trending:
        reason = "latency still trends at mid-run (MSER-5 would drop more than half of the run)"
    elif rho is None:
        users = scenario.workload.arrivals.users if isinstance(scenario.workload.arrivals, Closed) else 0
        reason = f"closed workload: {users} user(s), so at most {users} task(s) queue"
    else:
        reason = f"offered load {_percent(rho)} of {binding}"
    return warmup_s, Steady(warmup_s, rule, dropped, found, rho, binding, stable, reason)


def _percent(load: float) -> str:
    """63.4%, 99.9%, 140%: below 1 cut to 0.1% (not rounded: a stable load never reads 100%), above in whole %."""
    return f"{load:.0%}" if load >= 1 else f"{math.floor(load * 1000) / 10:g}%"
