"""Pipelines on the simulation clock: stages of worker coroutines joined by bounded queues.

Each stage has `workers` coroutines on the event loop (the strategy is asyncio). A worker takes an item from
its stage's queue (collecting up to `batch` items, waiting at most `max_wait` s after the first), runs the
stage's steps once for them, then puts each item into the next stage's queue, waiting while it is full
(backpressure). One feeder coroutine puts admitted items into the first queue, in order. An item's task ends
when it leaves the last stage.

The queues behave as `asyncio.Queue`: a put or a get that cannot proceed waits; the put or get that frees it
only wakes the waiter, which takes its slot or item when it next runs on the loop (behind the coroutines
already ready), and waits again if another coroutine got there first. This mirrors `asyncsim.real.pipeline`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from typing import Any

import simpy

from .._pipeline import batch_durations
from ..scenario import Node
from ..trace import K_ADMIT, K_BATCH, K_STAGE
from .cpu import Strand, compute
from .engine import TaskFailedError, _Engine

__all__ = ["PipelineEngine"]


class _Queue:
    """asyncio.Queue's state: items, and the getters and putters waiting (events fired to wake them)."""

    __slots__ = ("maxsize", "items", "getters", "putters")

    def __init__(self, maxsize: int | None) -> None:
        self.maxsize = maxsize
        self.items: deque[int] = deque()
        self.getters: deque[simpy.Event] = deque()
        self.putters: deque[simpy.Event] = deque()

    def full(self) -> bool:
        """No room for another item (never, when unbounded)."""
        return self.maxsize is not None and len(self.items) >= self.maxsize

    def put_nowait(self, item: int) -> None:
        """Add an item and wake the first waiting getter."""
        self.items.append(item)
        _wake_next(self.getters)

    def get_nowait(self) -> int:
        """Take the first item and wake the first waiting putter."""
        item = self.items.popleft()
        _wake_next(self.putters)
        return item


def _wake_next(waiters: deque[simpy.Event]) -> None:
    while waiters:
        event = waiters.popleft()
        if not event.triggered:
            event.succeed()
            return


class _StageState:
    """A stage's queue and what is still to come into it (to flush a partial batch at the end of input)."""

    def __init__(self, env: simpy.Environment, node: Node, spec: Any, n_items: int, res: int) -> None:
        self.node = node
        self.spec = spec
        self.queue = _Queue(spec.queue)
        self.to_come = n_items
        self.closed = env.event()
        self.res = res
        if n_items == 0:
            self.closed.succeed()

    def one_less(self) -> None:
        """One item fewer will ever be put into this stage (it was put, or it failed upstream)."""
        self.to_come -= 1
        if self.to_come == 0:
            self.closed.succeed()


class PipelineEngine(_Engine):
    """The engine for a workload with `stages`: items flow through stage workers instead of running alone."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        workload = self.sc.workload
        assert workload.stages is not None
        program = self.sc.programs[0]
        n = self.sc.n_tasks
        self.stages = [
            _StageState(self.env, node, workload.stages[node.name], n,  # type: ignore[index]
                        self.trace.resource_id(f"stage:{node.name}"))
            for node in program.steps
        ]
        self.ready_at = [0.0] * n  # when each item became ready for the stage it is entering
        self.backlog: deque[int] = deque()  # admitted items the feeder has not put yet
        self.feeder_idle: simpy.Event | None = None
        for k, stage in enumerate(self.stages):
            for _ in range(stage.spec.workers):
                self.env.process(self._worker(k))
        self.env.process(self._feeder())

    def _task(self, i: int) -> Generator[Any, Any, None]:
        """An item is admitted: hand it to the feeder."""
        env = self.env
        if env.now > self.arrival[i]:  # it waited for admission (asyncio:K caps the items in the pipeline)
            self.trace.add(i, -1, K_ADMIT, self.admit_res, self.arrival[i], env.now, env.now)
        self.ready_at[i] = env.now
        self.backlog.append(i)
        if self.feeder_idle is not None and not self.feeder_idle.triggered:
            self.feeder_idle.succeed()
        yield from ()

    def _feeder(self) -> Generator[Any, Any, None]:
        """Put admitted items into the first queue in order, waiting while it is full.

        An arrival itself costs the feeder no loop time (the real run's measured arrival is when it ran).
        """
        stage, s = self.stages[0], self._new_strand()
        while True:
            while not self.backlog:
                if s.holding:
                    self._leave(s)
                self.feeder_idle = self.env.event()
                yield self.feeder_idle
            i = self.backlog.popleft()
            yield from self._put(stage.queue, i, s)
            stage.one_less()

    def _resume(self, s: Strand) -> Generator[Any, Any, None]:
        """A woken coroutine queues for the loop and resumes (paying the loop's per-step overhead)."""
        event = s.acquire()
        if event is not None:
            yield event
        s.holding = True
        if s.overhead:
            overhead, s.overhead = s.overhead, self.strand_overhead
            yield from compute(self.env, self.cores, s.thread, overhead)

    def _put(self, queue: _Queue, item: int, s: Strand) -> Generator[Any, Any, None]:
        """`await queue.put(item)`."""
        while queue.full():
            event = self.env.event()
            queue.putters.append(event)
            if s.holding:
                self._leave(s)
            yield event
            yield from self._resume(s)
        queue.put_nowait(item)

    def _worker(self, k: int) -> Generator[Any, Any, None]:
        stage = self.stages[k]
        queue = stage.queue
        s = self._new_strand()
        while True:
            while not queue.items:  # `await queue.get()`
                event = self.env.event()
                queue.getters.append(event)
                if s.holding:
                    self._leave(s)
                yield event
                yield from self._resume(s)
            batch = [queue.get_nowait()]
            if stage.spec.batch > 1:
                yield from self._collect(stage, batch, s)
            yield from self._run_batch(k, batch, s)

    def _collect(self, stage: _StageState, batch: list[int], s: Strand) -> Generator[Any, Any, None]:
        """Add items to `batch` until it is full, `max_wait` has passed, or no more items can come."""
        env, spec, queue = self.env, stage.spec, stage.queue
        deadline = None if spec.max_wait is None else env.now + spec.max_wait
        while len(batch) < spec.batch:
            if queue.items:
                batch.append(queue.get_nowait())
                continue
            if stage.closed.triggered or (deadline is not None and deadline <= env.now):
                return
            get = env.event()
            queue.getters.append(get)
            stop = stage.closed if deadline is None else (
                stage.closed | env.timeout(self._timer(deadline - env.now)))  # a loop timer, as sleeps are
            if s.holding:
                self._leave(s)
            yield get | stop
            yield from self._resume(s)
            if not get.triggered:
                queue.getters.remove(get)
                return

    def _run_batch(self, k: int, batch: list[int], s: Strand) -> Generator[Any, Any, None]:
        """Run stage k's steps once for `batch`, record it, then pass each item on (or fail them all)."""
        env, tb, stage = self.env, self.trace, self.stages[k]
        leader = batch[0]
        start = env.now
        durs = batch_durations(self.sc, stage.node, batch)
        failure: TaskFailedError | None = None
        self.batch_size[leader] = len(batch)
        try:
            yield from self._steps(leader, durs, stage.node.body, s)
        except TaskFailedError as exc:
            failure = exc
        del self.batch_size[leader]
        if not s.holding:  # the worker resumes after its last step (or the exception), as a coroutine does
            yield from self._enter(s, leader, stage.node.id)
        end = env.now
        tb.add(leader, stage.node.id, K_STAGE, stage.res, self.ready_at[leader], start, end, float(len(batch)))
        for i in batch[1:]:
            tb.add(i, stage.node.id, K_BATCH, stage.res, self.ready_at[i], start, end)
        last = k + 1 == len(self.stages)
        for i in batch:
            if failure is not None:
                self.failed[i] = True
                self.errors[i] = str(failure)
                for later in self.stages[k + 1:]:
                    later.one_less()
                self._finish(i)
            elif last:
                self._finish(i)
            else:
                self.ready_at[i] = end
                yield from self._put(self.stages[k + 1].queue, i, s)
                self.stages[k + 1].one_less()

    def _capacities(self) -> dict[str, int | None]:
        caps = super()._capacities()
        caps.update({f"stage:{s.node.name}": s.spec.workers for s in self.stages})
        return caps
