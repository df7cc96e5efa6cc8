"""What the simulator and the real runner share about a pipeline: the draws a batch runs with, the route
each item takes through the stages (feedback included), and the ticket a stage queue orders it by.

One definition for both sides (a paired comparison needs the same composed durations and routes), free of
simpy and asyncio so either may import it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from ..scenario import CALL, CPU, Node, Scenario
from ..trace import K_BATCH, K_STAGE, TraceBuilder
from .queues import Ticket

__all__ = ["Routing", "batch_durations", "entries", "item_ticket", "leaves", "routes"]


def batch_durations(scenario: Scenario, node: Node, batch: list[int]) -> list[float]:
    """The draws (model seconds, indexed like a task's row) that `batch` runs stage `node`'s steps with.

    The first item's draws, with each cpu step's time and each call's input and output tokens summed over the
    batch; io steps and call latencies stay the first item's (a call's per-item latency is added where it is
    served, from the batch size).
    """
    rows = [scenario.task_durations(i) for i in batch]
    durs = rows[0].tolist()
    if len(batch) == 1:
        return durs
    for n in leaves(node.body):
        if n.kind == CPU:
            durs[n.id] = float(sum(r[n.id] for r in rows))
        elif n.kind == CALL and n.col >= 0:
            durs[n.col] = float(sum(r[n.col] for r in rows))
            durs[n.col + 1] = float(sum(r[n.col + 1] for r in rows))
    return durs


def leaves(nodes: tuple[Node, ...]) -> Iterator[Node]:
    """Every node of a step tree, depth first (use bodies and parallel branches included)."""
    for node in nodes:
        yield node
        yield from leaves(node.body)
        for branch in node.branches:
            yield from leaves(branch)


def routes(scenario: Scenario) -> list[tuple[int, ...]]:
    """Each item's stages (indices, in the order it visits them): all of them once, and again from a
    feedback stage's target each time the item's drawn returns (`Scenario.returns`) send it back."""
    workload = scenario.workload
    assert workload.stages is not None
    specs = list(workload.stages.values())
    straight = tuple(range(len(specs)))
    if scenario.returns is None:
        return [straight] * scenario.n_tasks
    names = list(workload.stages)
    target = [names.index(s.feedback.to) if s.feedback is not None else -1 for s in specs]
    out = []
    for budget in scenario.returns.tolist():
        if not any(budget):
            out.append(straight)
            continue
        route, k = [], 0
        while k < len(specs):  # ends: every return spends one of a finite budget
            route.append(k)
            if budget[k] > 0:
                budget[k] -= 1
                k = target[k]
            else:
                k += 1
        out.append(tuple(route))
    return out


def entries(all_routes: list[tuple[int, ...]], n_stages: int) -> list[int]:
    """How many times items will be put into each stage's queue (to flush a partial batch at the end)."""
    counts = [0] * n_stages
    for route in all_routes:
        for k in route:
            counts[k] += 1
    return counts


def item_ticket(arrival: float) -> Ticket:
    """What a stage queue's policy knows of an item: a pipeline has one item class, with no priority, weight
    or deadline of its own, so its deadline is its arrival (edf serves the item that entered the pipeline
    first, a returning one included; priority, sjf and fair tie and keep queue order)."""
    return Ticket(deadline=arrival)


class _Countdown(Protocol):
    def one_less(self) -> None: ...


StageT = TypeVar("StageT", bound=_Countdown)


class Routing(Generic[StageT]):
    """Where each item of a pipeline is on its route, and what happens when a batch ends a stage: one rule
    for the simulator's engine and the real runner.

    The class that mixes it in keeps `stages` (each with `one_less()`: one item fewer will come), and defines
    `_finish(i)` (the item left the pipeline) and `_item_failed(i, exc)`.
    """

    stages: list[StageT]
    if TYPE_CHECKING:
        def _finish(self, i: int) -> Any: ...
        def _item_failed(self, i: int, exc: BaseException) -> None: ...

    def _init_routes(self, scenario: Scenario) -> list[int]:
        """Draw each item's route; returns how many times items will enter each stage."""
        self.routes = routes(scenario)
        self.pos = [0] * scenario.n_tasks  # each item's position in its route
        self.ready_at = [0.0] * scenario.n_tasks  # when each item became ready for the stage it is entering
        return entries(self.routes, len(scenario.programs[0].steps))

    def _batch_ended(self, tb: TraceBuilder, node: int, res: int, batch: list[int], start: float, end: float,
                     failure: BaseException | None) -> list[tuple[int, int]]:
        """Record the batch's stage (its leader's record carries the batch size) and move its items on.

        A failed batch fails its items, which will enter none of their later stages; an item at the end of its
        route finishes; every other item is ready for its next stage at `end`. Returns (item, next stage) for
        those, in batch order: the caller puts each into that stage's queue (waiting while it is full), then
        calls its `one_less()`.
        """
        leader = batch[0]
        tb.add(leader, node, K_STAGE, res, self.ready_at[leader], start, end, float(len(batch)))
        for i in batch[1:]:
            tb.add(i, node, K_BATCH, res, self.ready_at[i], start, end)
        onward = []
        for i in batch:
            pos = self.pos[i]
            later = self.routes[i][pos + 1:]
            if failure is not None:
                self._item_failed(i, failure)
                for j in later:
                    self.stages[j].one_less()
                self._finish(i)
            elif not later:
                self._finish(i)
            else:
                self.ready_at[i] = end
                self.pos[i] = pos + 1
                onward.append((i, later[0]))
        return onward
