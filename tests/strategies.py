"""Hypothesis strategies for small random workloads and strategy strings (used by test_properties).

Generated models never deadlock: a `use` nested inside another `use` (directly or through a parallel
branch) always names a pool of a strictly higher index than every pool held around it, so no strand
ever waits for a pool while holding the same or a higher one (resource ordering).
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

import asyncsim as a

DURATIONS = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
MAX_DEPTH = 2


@st.composite
def dists(draw: st.DrawFn) -> Any:
    """A duration distribution: mostly constants (exact arithmetic), sometimes random."""
    kind = draw(st.sampled_from(["constant", "constant", "exponential", "uniform"]))
    if kind == "constant":
        return a.Constant(draw(st.sampled_from(DURATIONS)))
    if kind == "exponential":
        return a.Exponential(draw(st.sampled_from(DURATIONS[1:])))
    low = draw(st.sampled_from(DURATIONS))
    return a.Uniform(low=low, high=low + draw(st.sampled_from(DURATIONS[1:])))


@st.composite
def steps(draw: st.DrawFn, *, pools: list[str], services: list[str], depth: int = 0,
          min_pool: int = 0, min_size: int = 1, max_size: int = 3) -> tuple[Any, ...]:
    """A list of steps; `use` may only name pools with index >= `min_pool` (see the module docstring)."""
    n = draw(st.integers(min_size, max_size))
    out: list[Any] = []
    usable = list(range(min_pool, len(pools)))
    for _ in range(n):
        kinds = ["cpu", "io"]
        if services:
            kinds.append("call")
        if depth < MAX_DEPTH:
            kinds.append("parallel")
            if usable:
                kinds.append("use")
        kind = draw(st.sampled_from(kinds))
        if kind == "cpu":
            out.append(a.cpu(draw(dists())))
        elif kind == "io":
            out.append(a.io(draw(dists())))
        elif kind == "call":
            out.append(a.call(draw(st.sampled_from(services))))
        elif kind == "use":
            p = draw(st.sampled_from(usable))
            body = draw(steps(pools=pools, services=services, depth=depth + 1, min_pool=p + 1, max_size=2))
            out.append(a.use(pools[p], list(body)))
        else:
            n_branches = draw(st.integers(2, 3))
            branches = [list(draw(steps(pools=pools, services=services, depth=depth + 1, min_pool=min_pool,
                                        max_size=2)))
                        for _ in range(n_branches)]
            out.append(a.parallel(*branches))
    return tuple(out)


@st.composite
def arrivals(draw: st.DrawFn, *, max_tasks: int = 8, closed: bool = True) -> Any:
    """An arrival process with at most `max_tasks` tasks."""
    kinds = ["batch", "batch", "uniform", "poisson", "trace"] + (["closed"] if closed else [])
    kind = draw(st.sampled_from(kinds))
    count = draw(st.integers(1, max_tasks))
    if kind == "batch":
        return a.Batch(count=count)
    if kind == "uniform":
        return a.Periodic(interval=draw(st.sampled_from(DURATIONS)), count=count)
    if kind == "poisson":
        return a.Poisson(rate=draw(st.sampled_from([10.0, 50.0, 200.0])), count=count)
    if kind == "trace":
        gaps = draw(st.lists(st.sampled_from(DURATIONS), min_size=count, max_size=count))
        times, t = [], 0.0
        for g in gaps:
            t += g
            times.append(t)
        return a.TraceArrivals(times=tuple(times))
    return a.Closed(users=draw(st.integers(1, 3)), think=draw(dists()), count=count)


def strategy_strings() -> st.SearchStrategy[str]:
    """Every strategy form, with small counts."""
    n = st.integers(1, 4)
    return st.one_of(
        st.just("sequential"),
        n.map(lambda k: f"threads:{k}"),
        n.map(lambda k: f"processes:{k}"),
        st.just("asyncio"),
        n.map(lambda k: f"asyncio:{k}"),
        st.tuples(st.one_of(st.none(), n), st.sampled_from(["threads", "processes"]), n).map(
            lambda t: f"asyncio{'' if t[0] is None else f':{t[0]}'}+{t[1]}:{t[2]}"),
    )


def machines(*, overheads: bool = False) -> st.SearchStrategy[a.Machine]:
    """Machines with 1-4 cores, with or without a GIL; ideal (no overheads) unless `overheads`."""
    if not overheads:
        return st.builds(a.Machine, cores=st.integers(1, 4), gil=st.booleans())
    small = st.sampled_from([0.0, 0.0005, 0.001])
    return st.builds(a.Machine, cores=st.integers(1, 4), gil=st.booleans(),
                     switch_interval_s=st.sampled_from([0.001, 0.005]), loop_step_s=small, thread_switch_s=small,
                     process_dispatch_s=small, sleep_overshoot_s=small)


POLICIES = ("fifo", "lifo", "priority", "sjf", "fair", "edf")


@st.composite
def workloads(draw: st.DrawFn, *, max_tasks: int = 8, closed: bool = True, overheads: bool = False,
              policies: bool = False) -> a.Workload:
    """A small random workload: 0-2 pools, 0-2 services, 1-2 task types, any arrival process.

    `closed=False` leaves out closed arrivals; `overheads=True` gives the machine loop/thread/dispatch costs;
    `policies=True` gives the admission queue, pools and services random scheduling policies (preemptive
    priority on bounded services) and the task types random priorities, weights and deadlines.
    """
    pools = [f"p{i}" for i in range(draw(st.integers(0, 2)))]
    services = [f"s{i}" for i in range(draw(st.integers(0, 2)))]
    n_types = draw(st.integers(1, 2))
    types = [draw(steps(pools=pools, services=services)) for _ in range(n_types)]
    fields: dict[str, Any] = {}
    if n_types == 1 and draw(st.booleans()):
        fields["task"] = types[0]
    else:
        fields["tasks"] = tuple(
            a.TaskType(name=f"t{i}", weight=draw(st.sampled_from([1.0, 2.0, 3.0])), steps=s,
                       priority=draw(st.integers(0, 2)) if policies else 0,
                       deadline=draw(st.sampled_from([None, 0.01, 0.1])) if policies else None)
            for i, s in enumerate(types))

    def policy() -> Any:
        return draw(st.sampled_from(POLICIES)) if policies else "fifo"

    def service() -> a.Service:
        concurrency = draw(st.one_of(st.none(), st.integers(1, 3)))
        kind = policy()
        if kind == "priority" and concurrency is not None and draw(st.booleans()):
            kind = {"priority": {"preemptive": True}}
        return a.Service(latency=draw(dists()), concurrency=concurrency, policy=kind)

    return a.Workload(
        name="random",
        arrivals=draw(arrivals(max_tasks=max_tasks, closed=closed)),
        pools={p: a.Pool(capacity=draw(st.integers(1, 3)), policy=policy()) for p in pools},
        services={s: service() for s in services},
        machine=draw(machines(overheads=overheads)),
        policy=policy(),
        **fields,
    )


@st.composite
def linear_workloads(draw: st.DrawFn, *, max_tasks: int = 10, cpu: bool = True) -> a.Workload:
    """Tasks that are a plain list of cpu/io steps with continuous durations (no ties, no shared resources).

    Arrivals are a batch or a Poisson stream, so a reference model can replay them exactly.
    """
    def leaf(kind: str) -> Any:
        mean = draw(st.sampled_from([0.001, 0.005, 0.02]))
        return a.cpu(a.Exponential(mean)) if kind == "cpu" else a.io(a.Exponential(mean))

    kinds = st.sampled_from(["cpu", "io"] if cpu else ["io"])
    n_types = draw(st.integers(1, 2))
    types = tuple(
        a.TaskType(name=f"t{i}", steps=tuple(leaf(k) for k in draw(st.lists(kinds, min_size=1, max_size=4))))
        for i in range(n_types)
    )
    count = draw(st.integers(1, max_tasks))
    arrivals = a.Batch(count=count) if draw(st.booleans()) else a.Poisson(rate=100.0, count=count)
    return a.Workload(name="linear", arrivals=arrivals, tasks=types)
