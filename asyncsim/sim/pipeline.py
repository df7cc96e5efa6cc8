"""Pipelines on the simulation clock: stages of worker coroutines joined by bounded queues.

Each stage has `workers` coroutines on the event loop (the strategy is asyncio). A worker takes an item from
its stage's queue (collecting up to `batch` items, waiting at most `max_wait` s after the first), runs the
stage's steps once for them, then puts each item into the next stage's queue, waiting while it is full
(backpressure). An item's task ends when it leaves the last stage. This mirrors the real runner's
`asyncio.Queue(maxsize)` and worker tasks.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from ..scenario import CALL, CPU, Node
from ..trace import K_ADMIT, K_BATCH, K_STAGE
from .cpu import Strand
from .engine import TaskFailedError, _Engine

__all__ = ["PipelineEngine"]


class _StageState:
    """A stage's queue and what is still to come into it (to flush a partial batch at the end of input)."""

    def __init__(self, env: simpy.Environment, node: Node, spec: Any, n_items: int, res: int) -> None:
        self.node = node
        self.spec = spec
        self.store = simpy.Store(env, capacity=spec.queue if spec.queue is not None else float("inf"))
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
        for k, stage in enumerate(self.stages):
            for _ in range(stage.spec.workers):
                self.env.process(self._worker(k))

    def _task(self, i: int) -> Generator[Any, Any, None]:
        """An item enters the pipeline: it is put into the first stage's queue (waiting while it is full)."""
        env = self.env
        if env.now > self.arrival[i]:  # it waited for admission (asyncio:K caps the items in the pipeline)
            self.trace.add(i, -1, K_ADMIT, self.admit_res, self.arrival[i], env.now, env.now)
        self.ready_at[i] = env.now
        stage = self.stages[0]
        yield stage.store.put(i)
        stage.one_less()

    def _worker(self, k: int) -> Generator[Any, Any, None]:
        stage = self.stages[k]
        spec, store = stage.spec, stage.store
        s = self._new_strand()
        while True:
            get = store.get()
            if not get.triggered and s.holding:
                self._leave(s)
            batch = [(yield get)]
            if spec.batch > 1:
                yield from self._collect(stage, batch, s)
            yield from self._run_batch(k, batch, s)

    def _collect(self, stage: _StageState, batch: list[int], s: Strand) -> Generator[Any, Any, None]:
        """Add items to `batch` until it is full, `max_wait` has passed, or no more items can come."""
        env, spec = self.env, stage.spec
        deadline = None if spec.max_wait is None else env.now + spec.max_wait
        while len(batch) < spec.batch:
            get = stage.store.get()
            if not get.triggered:
                if stage.closed.triggered:
                    get.cancel()
                    return
                stop = stage.closed if deadline is None else (stage.closed | env.timeout(max(0.0, deadline - env.now)))
                if s.holding:
                    self._leave(s)
                yield get | stop
                if not get.triggered:
                    get.cancel()
                    return
            else:
                yield get
            batch.append(get.value)

    def _run_batch(self, k: int, batch: list[int], s: Strand) -> Generator[Any, Any, None]:
        env, tb, stage = self.env, self.trace, self.stages[k]
        leader = batch[0]
        start = env.now
        durs = self._batch_durations(stage.node, batch)
        failure: TaskFailedError | None = None
        self.batch_size[leader] = len(batch)
        try:
            yield from self._steps(leader, durs, stage.node.body, s)
            if not s.holding:
                yield from self._enter(s, leader, stage.node.id)
        except TaskFailedError as exc:
            failure = exc
        del self.batch_size[leader]
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
                put = self.stages[k + 1].store.put(i)
                if not put.triggered:
                    self._leave(s)
                yield put
                self.stages[k + 1].one_less()

    def _batch_durations(self, node: Node, batch: list[int]) -> list[float]:
        """The draws a batch runs with: the first item's, with cpu times and call tokens summed over the batch."""
        sc = self.sc
        rows = [sc.durations[0][sc.task_row[i]] for i in batch]
        durs = rows[0].tolist()
        if len(batch) == 1:
            return durs
        for n in _leaves(node.body):
            if n.kind == CPU:
                durs[n.id] = float(sum(r[n.id] for r in rows))
            elif n.kind == CALL and n.col >= 0:
                durs[n.col] = float(sum(r[n.col] for r in rows))
                durs[n.col + 1] = float(sum(r[n.col + 1] for r in rows))
        return durs

    def _capacities(self) -> dict[str, int | None]:
        caps = super()._capacities()
        caps.update({f"stage:{s.node.name}": s.spec.workers for s in self.stages})
        return caps


def _leaves(nodes: tuple[Node, ...]) -> Generator[Node, None, None]:
    for node in nodes:
        yield node
        yield from _leaves(node.body)
        for branch in node.branches:
            yield from _leaves(branch)

