"""Task states from a trace: at every moment a task is computing, waiting, queued or throttled.

The rules (also in the README, and `metrics`' docstring): computing = CPU on a thread (the `cpu_s` of cpu and
resume records); waiting = I/O, a service, a dispatch, a batch run on another item; throttled = waiting for
rate-limit tokens or backing off before a retry; queued = everything else between a task's arrival and its
end (for admission, the loop, the GIL, a core, an executor, a pool, a service slot or batch, a stage). With
parallel branches a task is in the first of computing > waiting > throttled > queued that any branch is in.
`metrics` (the figures) and `results` (per-task tables and series) both read the states from here.
"""

from __future__ import annotations

import numpy as np

from .trace import K_ADMIT, K_BATCH, K_CALL, K_CPU, K_IO, K_RESUME, K_THROTTLE, Trace

__all__ = ["COMPUTING", "QUEUED", "STATES", "THROTTLED", "WAITING", "add_split", "in_flight_steps", "overlapping",
           "peak_in_flight", "state_segments", "step_count", "task_split"]

COMPUTING, WAITING, QUEUED, THROTTLED = 0, 1, 2, 3
STATES = ("computing", "waiting", "queued", "throttled")
_PRIORITY = (COMPUTING, WAITING, THROTTLED, QUEUED)  # a task in several states at once (branches) is in the first


_SLICE = 1 << 18  # records (tasks) taken at a time by task_split (peak_in_flight): bounds their temporaries


def overlapping(parallel_types: np.ndarray, task_type: np.ndarray) -> np.ndarray:
    """Per task: may its records overlap (it has parallel branches)?"""
    return parallel_types[task_type] if parallel_types.size else np.zeros(task_type.size, dtype=bool)


def in_flight_steps(arrival: np.ndarray, done: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The step function of tasks in flight: (times, level after each), over the finished tasks."""
    ok = ~np.isnan(done)
    times = np.concatenate([arrival[ok], done[ok]])
    delta = np.concatenate([np.ones(ok.sum(), dtype=np.int8), -np.ones(ok.sum(), dtype=np.int8)])
    order = np.lexsort((delta, times))  # departures (-1) before arrivals at equal times
    times, level = times[order], np.cumsum(delta[order], dtype=np.int64)
    if times.size == 0:  # nothing finished: no steps
        return times, level
    last = np.r_[times[1:] != times[:-1], True]  # keep the level after the last event at each time
    return times[last], level[last]


def peak_in_flight(arrival: np.ndarray, done: np.ndarray) -> int:
    """The most tasks in flight at once (departures counted before arrivals at ties), over the finished tasks.

    The level peaks just after an arrival: after the k-th arrival (in time order) k tasks have arrived and
    those done by then have left. Two sorted copies and a slice of levels at a time, not `in_flight_steps`'
    events (a million tasks: 16 MB instead of ~80 MB of temporaries).
    """
    ok = ~np.isnan(done)
    starts, ends = arrival[ok], done[ok]
    starts.sort()
    ends.sort()
    peak = 0
    for lo in range(0, starts.size, _SLICE):
        chunk = starts[lo:lo + _SLICE]
        level = np.arange(lo + 1, lo + 1 + chunk.size) - np.searchsorted(ends, chunk, side="right")
        peak = max(peak, int(level.max()))
    return peak


def step_count(times: np.ndarray, t0: np.ndarray, t1: np.ndarray) -> np.ndarray:
    """How many [t0, t1) intervals cover each of `times`."""
    started = np.searchsorted(np.sort(t0), times, side="right")
    ended = np.searchsorted(np.sort(t1), times, side="right")
    return started - ended


_FAMILIES = 5  # kinds of interval a record implies (see _family)


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


def task_split(trace: Trace, n: int, may_overlap: np.ndarray) -> np.ndarray:
    """Seconds each task spent in each state (STATES): a (4, n) array. `may_overlap[i]`: task i has parallel
    branches, whose records may overlap (`overlapping`)."""
    out = np.zeros((len(STATES), n))
    if may_overlap.any():
        task, t0, t1, state = state_segments(trace)
        for code in range(len(STATES)):
            mask = state == code
            out[code] = np.bincount(task[mask], weights=(t1 - t0)[mask], minlength=n)
        return out
    # Intervals that never overlap need no sweep: sum them family by family, slice by slice. np.add.at adds
    # in order, so each sum is the one a bincount over all intervals at once would make, to the last bit,
    # without holding them all (a million tasks imply ~6M intervals).
    for lo in range(0, len(trace), _SLICE):
        add_split(out, trace.records(lo, lo + _SLICE))
    return out


def add_split(out: np.ndarray, trace: Trace) -> None:
    """Add the seconds `trace`'s records put each task in each state to `out` (STATES x tasks), for tasks whose
    records never overlap: the same sums, to the last bit, however the records are cut into pieces."""
    for family in range(_FAMILIES):
        task, t0, t1, code = _family(trace, family, slice(None))
        np.add.at(out[code], task, t1 - t0)
