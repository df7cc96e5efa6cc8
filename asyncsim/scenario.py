"""A Scenario: a workload with every random draw made once, executed alike by the simulator and the real runner.

Draws come from independent streams keyed by purpose (`SeedSequence(seed, spawn_key=...)`), so adding a
step to one task type never changes the draws of another. Each task type is compiled to a `Program`: a
tree of `Node`s numbered in depth-first order; `durations[type][row, node]` holds the draw for the
task's leaf steps (cpu, io, and the latency of a call).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .spec import Batch, Call, Closed, Cpu, Io, Parallel, Periodic, Poisson, TraceArrivals, Use, Workload
from .strategies import Strategy, parse_strategy

__all__ = ["CALL", "CPU", "IO", "Node", "PAR", "Program", "Scenario", "USE", "build_scenario"]

CPU, IO, CALL, USE, PAR = 0, 1, 2, 3, 4
KIND_NAMES = ("cpu", "io", "call", "use", "parallel")


@dataclass(frozen=True, slots=True)
class Node:
    """One step of a compiled task program: `kind`, its number `id`, and what it refers to."""

    kind: int
    id: int
    name: str | None = None  # the service of a call, the pool of a use
    body: tuple[Node, ...] = ()  # the steps inside a use
    branches: tuple[tuple[Node, ...], ...] = ()  # the branches of a parallel
    path: str = ""


@dataclass(frozen=True)
class Program:
    """A task type compiled for execution: its step tree and the flat list of its nodes."""

    name: str
    steps: tuple[Node, ...]
    nodes: tuple[Node, ...]
    has_parallel: bool


def compile_steps(steps: tuple[Any, ...], path: str, nodes: list[Node]) -> tuple[Node, ...]:
    """Number a step tree depth first, appending each node to `nodes`."""
    out: list[Node] = []
    for i, step in enumerate(steps):
        here = f"{path}[{i}]"
        node_id = len(nodes)
        nodes.append(None)  # type: ignore[arg-type]  # reserve the id; filled below
        if isinstance(step, Cpu):
            node = Node(CPU, node_id, path=here)
        elif isinstance(step, Io):
            node = Node(IO, node_id, path=here)
        elif isinstance(step, Call):
            node = Node(CALL, node_id, step.service, path=here)
        elif isinstance(step, Use):
            node = Node(USE, node_id, step.pool, body=compile_steps(step.steps, f"{here}.use.steps", nodes),
                        path=here)
        else:
            assert isinstance(step, Parallel)
            branches = tuple(compile_steps(b, f"{here}.parallel[{j}]", nodes) for j, b in enumerate(step.branches))
            node = Node(PAR, node_id, branches=branches, path=here)
        nodes[node_id] = node
        out.append(node)
    return tuple(out)


@dataclass(frozen=True, eq=False)
class Scenario:
    """Everything drawn: per-task arrival (or think) times, task types and step durations.

    `arrivals` is None for closed workloads, whose tasks are submitted by users after `think[i]`.
    """

    workload: Workload
    strategy: Strategy
    seed: int
    programs: tuple[Program, ...]
    task_type: np.ndarray  # int, per task
    task_row: np.ndarray  # int, the task's row in durations[task_type]
    durations: tuple[np.ndarray, ...]  # per type: (tasks of that type) x (nodes)
    arrivals: np.ndarray | None
    think: np.ndarray | None

    @property
    def n_tasks(self) -> int:
        """Number of tasks."""
        return int(self.task_type.size)

    def task_durations(self, task: int) -> np.ndarray:
        """The drawn durations of one task, indexed by node id."""
        return self.durations[self.task_type[task]][self.task_row[task]]

    def with_durations(self, durations: tuple[np.ndarray, ...]) -> Scenario:
        """A copy with other step durations (e.g. those a real run actually had), everything else equal."""
        if len(durations) != len(self.durations) or any(
            a.shape != b.shape for a, b in zip(durations, self.durations, strict=True)
        ):
            raise ValueError("durations must have the scenario's shape")
        return Scenario(self.workload, self.strategy, self.seed, self.programs, self.task_type, self.task_row,
                        tuple(np.asarray(d, dtype=float) for d in durations), self.arrivals, self.think)


    def with_arrivals(self, arrivals: np.ndarray) -> Scenario:
        """A copy with other arrival times (open workloads), everything else equal."""
        if self.arrivals is None or arrivals.shape != self.arrivals.shape:
            raise ValueError("arrivals must have the scenario's shape (and the workload must be open)")
        return Scenario(self.workload, self.strategy, self.seed, self.programs, self.task_type, self.task_row,
                        self.durations, np.asarray(arrivals, dtype=float), self.think)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


_ARRIVALS_KEY, _MIX_KEY, _STEPS_KEY = 1, 2, 3


def _arrival_times(workload: Workload, seed: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    arr = workload.arrivals
    rng = _rng(seed, _ARRIVALS_KEY)
    if isinstance(arr, Batch):
        return np.zeros(arr.count), None
    if isinstance(arr, Periodic):
        return np.arange(arr.count) * arr.interval, None
    if isinstance(arr, TraceArrivals):
        return np.asarray(arr.times, dtype=float), None
    if isinstance(arr, Poisson):
        if arr.count is not None:
            return np.cumsum(rng.exponential(1 / arr.rate, arr.count)), None
        assert arr.duration is not None
        chunks, t = [], 0.0
        while t < arr.duration:
            gaps = np.cumsum(rng.exponential(1 / arr.rate, max(16, int(arr.rate * arr.duration * 1.2) + 16))) + t
            chunks.append(gaps)
            t = float(gaps[-1])
        times = np.concatenate(chunks)
        return times[times < arr.duration], None
    assert isinstance(arr, Closed)
    return None, arr.think.sample(rng, arr.count)


def build_scenario(workload: Workload, *, seed: int = 0, strategy: Strategy | str | None = None) -> Scenario:
    """Make every random draw of `workload` for `seed` (the strategy defaults to the workload's)."""
    strat = workload.strategy if strategy is None else parse_strategy(strategy)
    arrivals, think = _arrival_times(workload, seed)
    n = int(arrivals.size if arrivals is not None else think.size)  # type: ignore[union-attr]
    types = workload.task_types
    weights = np.array([t.weight for t in types])
    if len(types) == 1:
        task_type = np.zeros(n, dtype=np.int64)
    else:
        task_type = _rng(seed, _MIX_KEY).choice(len(types), size=n, p=weights / weights.sum())
    task_row = np.zeros(n, dtype=np.int64)
    programs, durations = [], []
    for t, tt in enumerate(types):
        nodes: list[Node] = []
        path = "task" if workload.tasks is None else f"tasks[{t}].steps"
        steps = compile_steps(tt.steps, path, nodes)
        programs.append(Program(tt.name or f"type{t}", steps, tuple(nodes), any(x.kind == PAR for x in nodes)))
        members = np.flatnonzero(task_type == t)
        task_row[members] = np.arange(members.size)
        matrix = np.zeros((members.size, len(nodes)))
        for node in nodes:
            if node.kind in (CPU, IO, CALL):
                step_dist = _dist_of(workload, tt.steps, node)
                matrix[:, node.id] = step_dist.sample(_rng(seed, _STEPS_KEY, t, node.id), members.size)
        durations.append(matrix)
    return Scenario(workload, strat, seed, tuple(programs), task_type, task_row, tuple(durations), arrivals, think)


def _dist_of(workload: Workload, steps: tuple[Any, ...], node: Node) -> Any:
    """The distribution a leaf node draws from (a call draws its service's latency)."""
    if node.kind == CALL:
        return workload.services[node.name].latency  # type: ignore[index]
    step: Any = None
    for path, candidate in workload.walk():
        if path == node.path:
            step = candidate
            break
    assert step is not None, node.path
    return step.duration
