"""A Scenario: a workload with every random draw made once, executed alike by the simulator and the real runner.

Draws come from independent streams keyed by purpose (`SeedSequence(seed, spawn_key=...)`), so adding a
step to one task type never changes the draws of another. Each task type is compiled to a `Program`: a
tree of `Node`s numbered in depth-first order; `durations[type][row, node]` holds the draw for the
task's leaf steps (cpu, io, and the latency of a call).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .errors import ModelError
from .services import ATTEMPT_FIELDS, CALL_HEAD, Service, Tokens, call_width
from .spec import (
    Batch,
    Call,
    Closed,
    Cpu,
    Io,
    Parallel,
    Periodic,
    Poisson,
    TaskType,
    TraceArrivals,
    Use,
    Workload,
    pipeline_strategy_problems,
)
from .strategies import Strategy, parse_strategy

__all__ = ["CALL", "CPU", "IO", "Node", "PAR", "Program", "STAGE", "Scenario", "USE", "build_scenario", "span"]

CPU, IO, CALL, USE, PAR, STAGE = 0, 1, 2, 3, 4, 5
KIND_NAMES = ("cpu", "io", "call", "use", "parallel", "stage")


@dataclass(frozen=True, slots=True)
class Node:
    """One step of a compiled task program: `kind`, its number `id`, and what it refers to."""

    kind: int
    id: int
    name: str = ""  # the service of a call, the pool of a use, the stage of a stage ("" for other steps)
    body: tuple[Node, ...] = ()  # the steps inside a use or a stage
    branches: tuple[tuple[Node, ...], ...] = ()  # the branches of a parallel
    path: str = ""
    col: int = -1  # a call's first column of draws (services.call_width of them)


_RESERVED = Node(-1, -1)  # a placeholder while a node's id is taken and its children are compiled


@dataclass(frozen=True)
class Program:
    """A task type compiled for execution: its step tree and the flat list of its nodes."""

    name: str
    steps: tuple[Node, ...]
    nodes: tuple[Node, ...]
    has_parallel: bool
    expected: float = 0.0  # the mean time of a task of this type with nothing to wait for (for sjf)


def compile_steps(steps: tuple[Any, ...], path: str, nodes: list[Node]) -> tuple[Node, ...]:
    """Number a step tree depth first, appending each node to `nodes`."""
    out: list[Node] = []
    for i, step in enumerate(steps):
        here = f"{path}[{i}]"
        node_id = len(nodes)
        nodes.append(_RESERVED)  # reserve the id; filled below
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
    returns: np.ndarray | None = None  # pipelines with feedback: (items x stages), times each item goes back

    @property
    def users(self) -> int:
        """How many closed-loop users submit the tasks (a closed workload only)."""
        arrivals = self.workload.arrivals
        assert isinstance(arrivals, Closed), "only a closed workload has users"
        return min(arrivals.users, self.n_tasks)

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
                        tuple(np.asarray(d, dtype=float) for d in durations), self.arrivals, self.think,
                        self.returns)

    def with_cpu_jitter(self, cv: float) -> Scenario:
        """A copy whose CPU steps each take their drawn time times a mean-1 lognormal factor of coefficient of
        variation `cv` (Machine.cpu_jitter_cv: the same work never takes the same time twice), drawn from the
        scenario's seed; `cv` 0: this scenario."""
        if cv <= 0:
            return self
        sigma = float(np.sqrt(np.log1p(cv * cv)))
        rng = _rng(self.seed, _JITTER_KEY)
        durations = []
        for program, drawn in zip(self.programs, self.durations, strict=True):
            cols = [node.id for node in program.nodes if node.kind == CPU]
            drawn = drawn.copy()
            if cols and drawn.size:
                drawn[:, cols] *= rng.lognormal(-sigma * sigma / 2, sigma, size=(drawn.shape[0], len(cols)))
            durations.append(drawn)
        return self.with_durations(tuple(durations))

    def with_arrivals(self, arrivals: np.ndarray) -> Scenario:
        """A copy with other arrival times (open workloads), everything else equal."""
        if self.arrivals is None or arrivals.shape != self.arrivals.shape:
            raise ValueError("arrivals must have the scenario's shape (and the workload must be open)")
        return Scenario(self.workload, self.strategy, self.seed, self.programs, self.task_type, self.task_row,
                        self.durations, np.asarray(arrivals, dtype=float), self.think, self.returns)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


_ARRIVALS_KEY, _MIX_KEY, _STEPS_KEY, _JITTER_KEY = 1, 2, 3, 4


def _arrival_times(workload: Workload, seed: int) -> tuple[np.ndarray | None, np.ndarray | None]:
    arr = workload.arrivals
    assert arr is not None
    return _times(arr, _rng(seed, _ARRIVALS_KEY))


def _times(arr: Any, rng: np.random.Generator) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Arrival times of an open process, or (None, think times) of a closed one."""
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


def _class_arrivals(workload: Workload, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every class's own arrivals merged in time order: (times, class of each task); ties keep class order."""
    times, classes = [], []
    for t, tt in enumerate(workload.task_types):
        mine, _ = _times(tt.arrivals, _rng(seed, _ARRIVALS_KEY, t))
        assert mine is not None
        times.append(mine)
        classes.append(np.full(mine.size, t, dtype=np.int64))
    all_times, all_classes = np.concatenate(times), np.concatenate(classes)
    order = np.lexsort((all_classes, all_times))
    return all_times[order], all_classes[order]


def build_scenario(workload: Workload, *, seed: int = 0, strategy: Strategy | str | None = None) -> Scenario:
    """Make every random draw of `workload` for `seed` (the strategy defaults to the workload's).

    Raises:
        ModelError: when the strategy cannot run the workload (a pipeline needs asyncio).
    """
    strat = workload.strategy if strategy is None else parse_strategy(strategy)
    if workload.stages is not None and (problems := pipeline_strategy_problems(strat, workload.stages)):
        raise ModelError(problems)
    types = workload.task_types or (TaskType(name="item", steps=(Io(duration=0.0),)),)
    arrivals: np.ndarray | None
    if workload.arrivals is None:
        arrivals, task_type = _class_arrivals(workload, seed)
        think = None
        n = int(arrivals.size)
    else:
        arrivals, think = _arrival_times(workload, seed)
        drawn = arrivals if arrivals is not None else think
        assert drawn is not None  # an open workload has arrival times, a closed one think times
        n = int(drawn.size)
        weights = np.array([t.weight for t in types])
        if len(types) == 1:
            task_type = np.zeros(n, dtype=np.int64)
        else:
            task_type = _rng(seed, _MIX_KEY).choice(len(types), size=n, p=weights / weights.sum())
    task_row = np.zeros(n, dtype=np.int64)
    programs, durations = [], []
    steps_of = {node_path: step for node_path, step in workload.walk()}
    for t, tt in enumerate(types):
        nodes: list[Node] = []
        if workload.stages is not None:
            steps = _compile_stages(workload, nodes)
        else:
            steps = compile_steps(tt.steps, "task" if workload.tasks is None else f"tasks[{t}].steps", nodes)
        nodes, width = _place_calls(workload, nodes)
        steps = tuple(_renumber(x, nodes) for x in steps)
        programs.append(Program(tt.name or f"type{t}", steps, tuple(nodes), any(x.kind == PAR for x in nodes),
                                _expected(workload, steps, steps_of)))
        members = np.flatnonzero(task_type == t)
        task_row[members] = np.arange(members.size)
        matrix = np.zeros((members.size, width))
        for node in nodes:
            if node.kind in (CPU, IO):
                matrix[:, node.id] = steps_of[node.path].duration.sample(
                    _rng(seed, _STEPS_KEY, t, node.id), members.size)
            elif node.kind == CALL and node.col < 0:
                latency = workload.services[node.name].latency
                assert latency is not None  # a call without draws of its own has a plain latency (call_width)
                matrix[:, node.id] = latency.sample(
                    _rng(seed, _STEPS_KEY, t, node.id), members.size)
            elif node.kind == CALL:
                _draw_call(workload.services[node.name], matrix, node, seed, t,
                           steps_of[node.path].tokens)
        durations.append(matrix)
    return Scenario(workload, strat, seed, tuple(programs), task_type, task_row, tuple(durations), arrivals, think,
                    _feedback_returns(workload, seed, n))


def _compile_stages(workload: Workload, nodes: list[Node]) -> tuple[Node, ...]:
    """A pipeline as one item program: a STAGE node per stage (in order) around the stage's steps."""
    out = []
    assert workload.stages is not None
    for name, stage in workload.stages.items():
        node_id = len(nodes)
        nodes.append(_RESERVED)
        here = f"stages.{name}"
        node = Node(STAGE, node_id, name, body=compile_steps(stage.steps, f"{here}.steps", nodes), path=here)
        nodes[node_id] = node
        out.append(node)
    return tuple(out)


_FEEDBACK_KEY = 5


def _feedback_returns(workload: Workload, seed: int, n: int) -> np.ndarray | None:
    """How many times each item goes back from each stage: per pass a draw of its own stream, stopping at the
    first item that stays or at max_passes (None without feedback)."""
    stages = list((workload.stages or {}).values())
    if not any(s.feedback is not None for s in stages):
        return None
    returns = np.zeros((n, len(stages)), dtype=np.int64)
    for k, stage in enumerate(stages):
        fb = stage.feedback
        if fb is None:
            continue
        back = _rng(seed, _FEEDBACK_KEY, k).random((n, fb.max_passes)) < fb.probability
        returns[:, k] = np.where(back.all(axis=1), fb.max_passes, back.argmin(axis=1))
    return returns


def _place_calls(workload: Workload, nodes: list[Node]) -> tuple[list[Node], int]:
    """Give every call node its block of draw columns after the per-node columns; returns the width."""
    width = len(nodes)
    placed = []
    for node in nodes:
        extra = call_width(workload.services[node.name]) if node.kind == CALL else 0
        if extra:
            node = replace(node, col=width)
            width += extra
        placed.append(node)
    return placed, width


def _renumber(node: Node, nodes: list[Node]) -> Node:
    """`node` with its body and branches rebuilt from `nodes` (after calls were placed)."""
    if node.kind == CALL:
        return nodes[node.id]
    if node.body or node.branches:
        return replace(nodes[node.id], body=tuple(_renumber(x, nodes) for x in node.body),
                       branches=tuple(tuple(_renumber(x, nodes) for x in b) for b in node.branches))
    return nodes[node.id]


_CALLS_KEY = 4


def span(nodes: tuple[Node, ...], leaf: Callable[[Node], Any], zero: Any = 0.0,
         longest: Callable[[list[Any]], Any] = max) -> Any:
    """The time `nodes` take when nothing waits: each leaf step takes `leaf(node)` (a number, or an array of one
    per task), steps add up, a pool's or a stage's body adds its own, parallel branches take the `longest`.

    The one walk of a program's structure that both a task's expected time (for `sjf`) and the lower bounds on
    T_total (`bounds`) make; a new step kind that nests steps is taught here once.
    """
    total = zero
    for node in nodes:
        if node.kind in (USE, STAGE):
            total = total + span(node.body, leaf, zero, longest)
        elif node.kind == PAR:
            total = total + longest([span(b, leaf, zero, longest) for b in node.branches])
        else:
            total = total + leaf(node)
    return total


def _expected(workload: Workload, steps: tuple[Node, ...], steps_of: dict[str, Any]) -> float:
    """Mean time of `steps` when nothing waits: the sum of mean durations (parallel branches: the longest)."""

    def mean(node: Node) -> float:
        if node.kind in (CPU, IO):
            return float(steps_of[node.path].duration.mean)
        assert node.kind == CALL
        svc = workload.services[node.name]
        if svc.latency is not None:
            return svc.latency.mean
        if svc.batching is not None:
            return svc.batching.batch_time(1)
        sizes = steps_of[node.path].tokens or svc.tokens
        assert svc.ttft is not None and svc.tpot is not None and sizes is not None  # noqa: PT018
        return svc.ttft.mean + svc.tpot.mean * max(sizes.output.mean - 1, 0.0)

    return float(span(steps, mean))


def _draw_call(service: Service, matrix: np.ndarray, node: Node, seed: int, t: int,
               own_tokens: Tokens | None = None) -> None:
    """Draw a call's tokens and, per attempt, its latency and the uniforms deciding failure and jitter."""
    rows = matrix.shape[0]
    attempts = service.attempts

    def rng(*key: int) -> np.random.Generator:
        return _rng(seed, _CALLS_KEY, t, node.id, *key)

    tokens_out = np.zeros(rows)
    if service.tokens is not None:
        sizes = own_tokens or service.tokens  # this call's own sizes, else the service's defaults
        matrix[:, node.col] = np.round(sizes.input.sample(rng(0), rows))
        tokens_out = np.round(sizes.output.sample(rng(1), rows))
        if service.tokens.max_tokens is not None:
            np.minimum(tokens_out, service.tokens.max_tokens, out=tokens_out)
        matrix[:, node.col + 1] = tokens_out
    for a in range(attempts):
        col = node.col + CALL_HEAD + ATTEMPT_FIELDS * a
        if service.latency is not None:
            # the first attempt's latency is the draw a call always had (same stream as cpu and io steps)
            lat_rng = _rng(seed, _STEPS_KEY, t, node.id) if a == 0 else rng(2, a)
            matrix[:, col] = service.latency.sample(lat_rng, rows)
        elif service.ttft is not None and service.tpot is not None:
            matrix[:, col] = (service.ttft.sample(rng(3, a), rows)
                              + service.tpot.sample(rng(4, a), rows) * np.maximum(tokens_out - 1, 0))
        matrix[:, col + 1] = rng(5, a).random(rows)
        matrix[:, col + 2] = rng(6, a).random(rows)
    matrix[:, node.id] = matrix[:, node.col + CALL_HEAD]
