"""The fast path: a model whose execution is a feed-forward network of FIFO stations, computed without events.

When no step contends for a CPU runner (no CPU on the loop or under the GIL; CPU only where each task has a
core of its own), no call can fail or wait for a limiter, and every pool and capped service is FIFO, a task's
times follow from its own draws and from the FIFO queues it passes: a station of `c` slots starts its requests
in the order they reach it, each on the slot that frees first (the Kiefer–Wolfowitz recursion: a heap of the
slots' free times), and a pool with a timeout lets a request go when its slot would come too late. Stations
are computed one after another in an order every task type agrees with (each type's steps pass them in that
order), each over all the tasks that reach it; the steps between them are delays, applied to every task at
once with numpy. A strategy's limit (`asyncio:K`, `threads:N`, ...) is such a station too when it is the only
one that can make a task wait: a task then holds its slot for the time its steps take.

It writes the records the engine writes (`trace`), so every metric comes from `metrics.compute_result`
unchanged, and it gives the engine's results exactly (to the rounding of a sum) on every model it accepts;
`refusal` says why it does not accept one. tests/test_fast.py compares the two record for record.
"""

from __future__ import annotations

import heapq
import math
from array import array
from collections.abc import Generator
from dataclasses import dataclass, field

import numpy as np

from ..rules.task import plain_call, pool_timeout
from ..scenario import CALL, CPU, IO, PAR, USE, Node, Scenario
from ..spec import Machine
from ..trace import K_ADMIT, K_CALL, K_CPU, K_IO, K_USE, CallTable, ResourceId, RunOutput, Trace
from .resources import capacities

__all__ = ["ENGINES", "fast_plan", "refusal", "run_fast"]

ENGINES = ("auto", "des", "fast")
"""`auto`: the fast path where it is exact, else the discrete-event engine; `des`, `fast`: that one."""

_OVERHEADS = ("loop_step_s", "task_create_s", "loop_block_s", "thread_switch_s", "thread_switch_idle_s",
              "thread_start_s", "thread_turnaround_s", "thread_submit_s", "thread_return_s", "process_dispatch_s",
              "process_return_s", "process_start_s", "process_wake_busy_s", "process_turnaround_s", "busy_wake_s",
              "sleep_overshoot_s", "timer_granularity_s", "semaphore_scan_s")


# ------------------------------------------------------------------------------------------ eligibility


def refusal(scenario: Scenario, machine: Machine | None = None) -> str | None:
    """Why `scenario` needs the discrete-event engine (None: the fast path computes it exactly)."""
    plan = fast_plan(scenario, machine)
    return plan if isinstance(plan, str) else None


def fast_plan(scenario: Scenario, machine: Machine | None = None) -> _Plan | str:
    """The fast path's plan of `scenario` (for `run_fast`), or why it needs the discrete-event engine."""
    w, strategy = scenario.workload, scenario.strategy
    m = machine or w.machine
    if w.stages is not None:
        return "a pipeline's stages (queues, batches, workers) need the event simulation"
    if scenario.arrivals is None:
        return "closed users submit each task when the last one ends: a feedback loop"
    if w.policy.kind != "fifo":
        return f"admission by {w.policy.kind} is not FIFO"
    if strategy.executor is not None:
        return f"{strategy}: an executor's workers and the loop share the CPU"
    overheads = [f"{k}={getattr(m, k):g}" for k in _OVERHEADS if getattr(m, k)]
    if overheads:
        return f"the machine's overheads ({', '.join(overheads)}) are CPU the tasks contend for"
    capped = frozenset(k for k, s in w.services.items() if s.concurrency is not None)
    own_core = not strategy.on_loop and not (strategy.threaded and m.gil) and (strategy.admission or 1) <= m.cores
    for program in scenario.programs:
        for node in program.nodes:
            at = node.path if len(scenario.programs) == 1 else f"{program.name}: {node.path}"
            if node.kind == CPU and not own_core:
                where = "the event loop" if strategy.on_loop else ("the GIL" if strategy.threaded and m.gil
                                                                   else f"{m.cores} cores")
                return f"CPU steps ({at}) share {where}: they contend"
            if node.kind == PAR and strategy.forks and not strategy.on_loop:
                return (f"parallel branches ({at}) run on threads: each start hands its parent's GIL over, which "
                        "the event engine models")
            if node.kind == CALL:
                spec = w.services[node.name]
                if not plain_call(node, spec) or spec.batching is not None:
                    return f"calls to {node.name} can fail, retry, batch, connect or wait for a limiter"
                if spec.concurrency is not None and spec.policy.kind != "fifo":
                    return f"service {node.name} serves by {spec.policy.kind}, not FIFO"
            if node.kind == USE:
                pool = w.pools[node.name]
                if pool.policy.kind != "fifo":
                    return f"pool {node.name} hands slots by {pool.policy.kind}, not FIFO"
                if any(_stations(b, capped) for b in node.body):
                    return f"pool {node.name} holds a capped service or another pool: nested queues"
            if node.kind == PAR and any(_stations(n, capped) for branch in node.branches for n in branch):
                return f"parallel branches ({at}) queue for a capped service or a pool"
    return _Plan.of(scenario)


def _stations(node: Node, capped: frozenset[str]) -> list[str]:
    """The queues `node` and the steps inside it pass (pools, and the `capped` services), by key."""
    out = [f"pool:{node.name}"] if node.kind == USE else []
    out += [f"service:{node.name}"] if node.kind == CALL and node.name in capped else []
    for n in node.body:
        out += _stations(n, capped)
    for branch in node.branches:
        for n in branch:
            out += _stations(n, capped)
    return out


@dataclass
class _Plan:
    """Which queues can make a task wait (`binding`: key -> slots), in the order stations are computed."""

    binding: dict[str, int] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    gate: int | None = None  # the strategy's limit, when it can make a task wait

    @classmethod
    def of(cls, scenario: Scenario) -> _Plan | str:
        """The plan, or why the queues interact (a limit around another queue, a queue passed twice, ...)."""
        w, n = scenario.workload, scenario.n_tasks
        limit = scenario.strategy.admission
        gate = limit if limit is not None and limit < n else None
        cap = gate if gate is not None else n  # most tasks in flight at once
        slots = {f"pool:{k}": p.capacity for k, p in w.pools.items()}
        slots.update({f"service:{k}": s.concurrency for k, s in w.services.items() if s.concurrency is not None})
        binding = {k: c for k, c in slots.items() if c < cap}  # a larger one never makes a task wait
        if gate is not None and binding:
            key = next(iter(binding))
            return (f"the limit {scenario.strategy} wraps {key} ({binding[key]} slots): a task holds its slot "
                    "while it queues there, so the two queues interact")
        # every task type passes its stations in one order: edges from each to the next
        before: dict[str, set[str]] = {k: set() for k in binding}
        capped = frozenset(k for k, s in w.services.items() if s.concurrency is not None)
        for program in scenario.programs:
            seen: list[str] = []
            for node in program.steps:
                for key in _stations(node, capped):
                    if key not in binding:
                        continue
                    if key in seen:
                        return f"{program.name} passes {key} twice: its second visit queues behind later tasks"
                    if seen:
                        before[key].add(seen[-1])
                    seen.append(key)
        order: list[str] = []
        while len(order) < len(before):
            ready = [k for k, deps in before.items() if k not in order and deps <= set(order)]
            if not ready:
                return "task types pass the same queues in different orders: their waits interact"
            order.append(ready[0])
        return cls({k: binding[k] for k in order}, order, gate)


# ----------------------------------------------------------------------------------------- the stations


def fifo_starts(arrive: np.ndarray, service: np.ndarray, slots: int, timeout: float | None = None) -> np.ndarray:
    """When each request starts at a FIFO station of `slots` (requests in arrival order, ties in array order),
    each holding its slot `service` seconds; NaN for one that gives up after `timeout` s without a slot.

    One pass over the requests with a heap of the slots' free times, in chunks (a million requests never become
    a million Python floats at once).
    """
    free = [-math.inf] * slots
    starts = array("d")
    replace, nan = heapq.heapreplace, math.nan
    for i in range(0, len(arrive), _CHUNK):
        for a, s in zip(np.asarray(arrive[i:i + _CHUNK], dtype=float).tolist(),
                        np.asarray(service[i:i + _CHUNK], dtype=float).tolist(), strict=True):
            first = free[0]
            if first <= a:
                start = a
            elif timeout is not None and first - a > timeout:
                starts.append(nan)
                continue
            else:
                start = first
            replace(free, start + s)
            starts.append(start)
    return np.frombuffer(starts, dtype=float) if len(starts) else np.zeros(0)


_CHUNK = 1 << 16


# -------------------------------------------------------------------------------------------- the walk


class _Records:
    """Trace records and call-log rows gathered as arrays (one append per step and task type), column by column."""

    _TRACE = ("i8", "i4", "i1", "i2", "f8", "f8", "f8", "f8")  # the engine's trace columns (trace._FIELDS)

    def __init__(self) -> None:
        self.trace: list[list[np.ndarray]] = [[] for _ in self._TRACE]
        self.calls: list[list[np.ndarray]] = [[] for _ in range(5)]

    def add(self, task: np.ndarray, step: int, kind: int, res: int, enqueue: np.ndarray, start: np.ndarray,
            end: np.ndarray, cpu_s: np.ndarray | float = 0.0) -> None:
        """Records of one step for the tasks `task`."""
        k = task.size
        if k:
            values = (task, step, kind, res, enqueue, start, end, cpu_s)
            for col, value, dtype in zip(self.trace, values, self._TRACE, strict=True):
                col.append(value if isinstance(value, np.ndarray) else np.full(k, value, dtype))

    def call(self, task: np.ndarray, step: int, service: int, sent: np.ndarray, end: np.ndarray) -> None:
        """One attempt per task, an OK, of a call that cannot fail."""
        for col, value, dtype in zip(self.calls, (task, step, service, sent, end), ("i8", "i4", "i2", "f8", "f8"),
                                     strict=True):
            col.append(value if isinstance(value, np.ndarray) else np.full(task.size, value, dtype))

    @staticmethod
    def _column(parts: list[np.ndarray], dtype: str) -> np.ndarray:
        """The parts of a column as one array of `dtype`; the parts are let go (one column's copy at a time)."""
        out = np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype)
        parts.clear()
        return out

    def build_trace(self, resources: tuple[ResourceId, ...]) -> Trace:
        """The records as a Trace, in the engine's column types."""
        task, step, kind, res, enqueue, start, end, cpu_s = (
            self._column(parts, dtype) for parts, dtype in zip(self.trace, self._TRACE, strict=True))
        return Trace(task, step, kind, res, enqueue, start, end, cpu_s, resources)

    def build_calls(self) -> CallTable:
        """The call log: every attempt an OK of one item, no tokens."""
        task, step, service, sent, end = (self._column(parts, dtype)
                                          for parts, dtype in zip(self.calls, ("i8", "i4", "i2", "f8", "f8"),
                                                                  strict=True))
        n = task.size
        return CallTable(task=task, step=step, service=service, attempt=np.zeros(n, "i2"),
                         outcome=np.zeros(n, "i1"), sent=sent, end=end, tokens_in=np.zeros(n),
                         tokens_out=np.zeros(n), size=np.ones(n, "i4"))


# A station request the walk yields: (key, tasks, when they arrive, how long each holds a slot)
Request = tuple[str, np.ndarray, np.ndarray, np.ndarray]


class _Walk:
    """Applies a task type's steps to its tasks, all at once; stops at each station the plan makes binding."""

    def __init__(self, scenario: Scenario, plan: _Plan, res: dict[str, int], out: _Records) -> None:
        self.sc, self.plan, self.res, self.out = scenario, plan, res, out
        self.per_item = {k: s.per_item for k, s in scenario.workload.services.items()}
        self.timeout = {f"pool:{k}": p.timeout for k, p in scenario.workload.pools.items()}
        self.forks = scenario.strategy.forks
        self.failed_at: list[tuple[np.ndarray, np.ndarray, str]] = []  # tasks a pool timed out, when, the pool

    def steps(self, nodes: tuple[Node, ...], task: np.ndarray, durs: np.ndarray, t: np.ndarray,
              record: bool = True) -> Generator[Request, np.ndarray, tuple[np.ndarray, np.ndarray]]:
        """Run `nodes` for `task` (rows `durs`) from times `t`: (the tasks still going, their end times).

        A task whose pool wait times out fails there and leaves the walk (its end and failure recorded).
        """
        for node in nodes:
            task, durs, t = yield from self.step(node, task, durs, t, record)
        return task, t

    def step(self, node: Node, task: np.ndarray, durs: np.ndarray, t: np.ndarray,
             record: bool) -> Generator[Request, np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """One step: (the tasks still going, their rows, their times after it)."""
        out, kind = self.out, node.kind
        if kind in (CPU, IO):
            end = t + durs[:, node.id]
            if record:
                if kind == CPU:
                    out.add(task, node.id, K_CPU, -1, t, t, end, durs[:, node.id])
                else:
                    out.add(task, node.id, K_IO, -1, t, t, end)
            return task, durs, end
        if kind == CALL:
            key = f"service:{node.name}"
            hold = durs[:, node.id] + self.per_item[node.name]
            served = (yield key, task, t, hold) if key in self.plan.binding else t
            end = served + hold
            if record:
                out.add(task, node.id, K_CALL, self.res[key], t, served, end)
                out.call(task, node.id, self.res[key], t, end)
            return task, durs, end
        if kind == USE:
            key = f"pool:{node.name}"
            if key in self.plan.binding:
                body = self.span(node.body, task, durs, t)  # when each would give its slot back if it got it now
                held = yield key, task, t, body - t
                lost = np.isnan(held)
                if lost.any():
                    self._time_out(node, task[lost], t[lost])
                    task, durs, t, held = task[~lost], durs[~lost], t[~lost], held[~lost]
            else:
                held = t
            task2, end = yield from self.steps(node.body, task, durs, held, record)
            assert task2.size == task.size  # a pool's body holds no other queue (refusal)
            if record:
                out.add(task, node.id, K_USE, self.res[key], t, held, end)
            return task, durs, end
        assert kind == PAR
        end = t
        for branch in node.branches:  # branches hold no queue (refusal): each is a delay
            _, b_end = yield from self.steps(branch, task, durs, t if self.forks else end, record)
            end = np.maximum(end, b_end) if self.forks else b_end
        return task, durs, end

    def span(self, nodes: tuple[Node, ...], task: np.ndarray, durs: np.ndarray, t: np.ndarray) -> np.ndarray:
        """When delay-only `nodes` started at `t` would end, recording nothing."""
        walk = self.steps(nodes, task, durs, t, record=False)
        try:
            next(walk)
        except StopIteration as stop:
            return stop.value[1]
        raise AssertionError("a pool's body holds no other queue (refusal)")

    def _time_out(self, node: Node, task: np.ndarray, asked: np.ndarray) -> None:
        """Tasks that got no slot of `node`'s pool within its timeout: they fail then."""
        timeout = self.timeout[f"pool:{node.name}"]
        assert timeout is not None
        now = asked + timeout
        self.out.add(task, node.id, K_USE, self.res[f"pool:{node.name}"], asked, now, now)
        self.failed_at.append((task, now, node.name))


def run_fast(scenario: Scenario, machine: Machine | None = None, plan: _Plan | None = None) -> RunOutput:
    """Execute `scenario` on the fast path (see the module docstring); the engine's output, exactly. `plan` is
    `fast_plan`'s, when the caller has it already.

    Raises:
        ValueError: when the fast path does not apply (`refusal` says why).
    """
    checked = plan if plan is not None else fast_plan(scenario, machine)
    if isinstance(checked, str):
        raise ValueError(f"the fast path does not apply: {checked}")
    plan = checked
    sc, w = scenario, scenario.workload
    m = machine or w.machine
    strategy = sc.strategy
    # resource codes in the order the engine registers them, so that every table lists them alike
    names = [f"pool:{k}" for k in w.pools] + [f"service:{k}" for k in w.services]
    names += ["limit", "loop"] if strategy.on_loop else ["workers"] + (["gil"] if strategy.threaded and m.gil else [])
    fans_out = any(p.has_parallel for p in sc.programs)
    if strategy.dispatching and ((strategy.admission or 1) > m.cores or (fans_out and not m.gil)):
        names.append("cores")
    res = {name: i for i, name in enumerate(names)}
    out = _Records()
    walk = _Walk(sc, plan, res, out)
    n = sc.n_tasks
    assert sc.arrivals is not None
    arrival = np.asarray(sc.arrivals, dtype=float)
    done = np.full(n, math.nan)
    failed = np.zeros(n, dtype=bool)
    errors: dict[int, str] = {}
    types = [np.flatnonzero(sc.task_type == k) for k in range(len(sc.programs))]
    start = arrival
    if plan.gate is not None:  # the limit is the only queue: a task holds its slot for its steps' time
        span = np.empty(n)
        for k, program in enumerate(sc.programs):
            task = types[k]
            span[task] = walk.span(program.steps, task, sc.durations[k][sc.task_row[task]], arrival[task]) \
                - arrival[task]
        start = fifo_starts(arrival, span, plan.gate)
        late = np.flatnonzero(start > arrival)
        out.add(late, -1, K_ADMIT, res["workers" if "workers" in res else "limit"], arrival[late], start[late],
                start[late])
    walks = {k: walk.steps(p.steps, types[k], sc.durations[k][sc.task_row[types[k]]], start[types[k]])
             for k, p in enumerate(sc.programs)}
    pending: dict[int, Request] = {}

    def advance(k: int, reply: np.ndarray | None) -> None:
        try:
            pending[k] = walks[k].send(reply)  # type: ignore[arg-type]  # None starts a generator
        except StopIteration as stop:
            task, end = stop.value
            done[task] = end
    for k in walks:
        advance(k, None)
    for key in plan.order:
        here = [k for k, req in pending.items() if req[0] == key]
        if not here:
            continue
        task = np.concatenate([pending[k][1] for k in here])
        arrive = np.concatenate([pending[k][2] for k in here])
        hold = np.concatenate([pending[k][3] for k in here])
        order = np.lexsort((task, arrive))  # FIFO; at a tie, in task order
        timeout = walk.timeout.get(key)
        starts = np.empty(task.size)
        starts[order] = fifo_starts(arrive[order], hold[order], plan.binding[key], timeout)
        offset = 0
        for k in here:
            size = pending[k][1].size
            del pending[k]
            advance(k, starts[offset:offset + size])
            offset += size
    assert not pending, "every station was computed in the plan's order"
    for task, now, pool in walk.failed_at:
        done[task] = now
        failed[task] = True
        timeout = w.pools[pool].timeout
        assert timeout is not None
        errors.update(dict.fromkeys(task.tolist(), pool_timeout(pool, timeout)))
    trace = out.build_trace(tuple(ResourceId.parse(x) for x in names))
    return RunOutput(trace, arrival, done, sc.task_type, failed, 0, capacities(w, m, strategy.admission),
                     errors=errors, calls=out.build_calls() if w.services else None,
                     pool_startup_s=0.0 if strategy.dispatching else None, engine="fast")
