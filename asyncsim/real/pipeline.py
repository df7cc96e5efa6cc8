"""Pipelines run for real: the asyncio program a user writes, recording the simulator's trace.

One `asyncio.Queue(maxsize=stage.queue)` per stage and `workers` worker tasks per stage. A feeder puts each
arriving item into the first queue (a full queue blocks it; under asyncio:K a semaphore caps the items in the
pipeline). A worker takes an item, collects up to `batch` items (waiting at most `max_wait` s after the first,
or, unset, until the batch is full or no more items can come), runs the stage's steps once for the batch with
the real step interpreter, then puts each item into the next queue (backpressure). It mirrors
`asyncsim.sim.pipeline` decision for decision: the same batch draws (`_pipeline.batch_durations`), the same
end-of-input rule (items still to come per stage, failed ones included) and the same records.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from .._pipeline import batch_durations
from ..scenario import Node
from ..trace import K_ADMIT, K_BATCH, K_STAGE

if TYPE_CHECKING:
    from .runner import _AsyncRun

__all__ = ["run_pipeline"]


class _Stage:
    """A stage's queue and the items still to come into it (to flush a partial batch at the end of input)."""

    def __init__(self, node: Node, spec: Any, n_items: int, res: int) -> None:
        self.node = node
        self.spec = spec
        self.queue: asyncio.Queue[int] = asyncio.Queue(maxsize=spec.queue or 0)
        self.to_come = n_items
        self.closed = n_items == 0
        self.collecting: set[asyncio.Timeout] = set()  # the timeouts of workers waiting to fill a batch
        self.res = res

    def one_less(self) -> None:
        """One item fewer will ever be put into this stage (it was put, or it failed upstream)."""
        self.to_come -= 1
        if self.to_come == 0:
            self.closed = True
            now = asyncio.get_running_loop().time()
            for timeout in self.collecting:  # no more items can come: stop waiting, run the partial batches
                timeout.reschedule(now)


async def run_pipeline(arun: _AsyncRun) -> None:
    """Run the scenario's pipeline on the running loop with `arun`'s steps, limit and executor."""
    await _Pipeline(arun).main()


class _Pipeline:
    def __init__(self, arun: _AsyncRun) -> None:
        self.arun = arun
        self.run = run = arun.run
        workload = run.sc.workload
        assert workload.stages is not None
        n = run.sc.n_tasks
        self.stages = [_Stage(node, workload.stages[node.name], n,  # type: ignore[index]
                              run.tb.resource_id(f"stage:{node.name}"))
                       for node in run.sc.programs[0].steps]
        self.ready_at = [0.0] * n  # when each item became ready for the stage it is entering
        self.finished = 0
        self.all_done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.users_waiting: dict[int, asyncio.Future[None]] = {}  # closed workloads: a user waits for its item
        if n == 0:
            self.all_done.set_result(None)

    async def main(self) -> None:
        """Start the workers and the feeder (or the users), and return when every item is done or failed."""
        sc = self.run.sc
        tasks = [asyncio.create_task(self._worker(k)) for k, stage in enumerate(self.stages)
                 for _ in range(stage.spec.workers)]
        if sc.arrivals is not None:
            tasks.append(asyncio.create_task(self._feed()))
        else:
            counter = [0, 0]
            users = min(sc.workload.arrivals.users, sc.n_tasks)  # type: ignore[union-attr]
            tasks += [asyncio.create_task(self._user(counter)) for _ in range(users)]
        pending: set[asyncio.Future[Any]] = {self.all_done, *tasks}
        try:
            while not self.all_done.done():
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in done:  # a feeder ends normally; a worker or user that ends has crashed
                    if t is not self.all_done and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # --------------------------------------------------------------------------------------- arrivals

    async def _feed(self) -> None:
        run = self.run
        for i, t in enumerate(run.sc.arrivals.tolist()):  # type: ignore[union-attr]
            delay = run.t0 + t * run.scale - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
                run.arrival[i] = run.now()  # timers wake late: the item arrives when it is handed over
            else:
                run.arrival[i] = t
            await self._enter(i)

    async def _user(self, counter: list[int]) -> None:
        run = self.run
        think = run.sc.think
        assert think is not None
        while counter[0] < think.size:
            k = counter[0]
            counter[0] += 1
            await asyncio.sleep(float(think[k]) * run.scale)
            i = counter[1]
            counter[1] += 1
            run.arrival[i] = run.now()
            done = self.users_waiting[i] = asyncio.get_running_loop().create_future()
            await self._enter(i)
            await done

    async def _enter(self, i: int) -> None:
        """Admit item i (asyncio:K) and put it into the first stage's queue, waiting while it is full."""
        run, limit = self.run, self.arun.limit
        ready = run.arrival[i]
        if limit is not None:
            waits = limit.locked()
            await limit.acquire()
            if waits:
                ready = run.now()
                run.tb.add(i, -1, K_ADMIT, self.arun.admit_res, run.arrival[i], ready, ready)
        self.ready_at[i] = ready
        stage = self.stages[0]
        await stage.queue.put(i)
        stage.one_less()

    def _finish(self, i: int) -> None:
        self.run.done[i] = self.run.now()
        if self.arun.limit is not None:
            self.arun.limit.release()
        user = self.users_waiting.pop(i, None)
        if user is not None:
            user.set_result(None)
        self.finished += 1
        if self.finished == self.run.sc.n_tasks:
            self.all_done.set_result(None)

    # ----------------------------------------------------------------------------------------- stages

    async def _worker(self, k: int) -> None:
        stage = self.stages[k]
        while True:
            batch = [await stage.queue.get()]
            if stage.spec.batch > 1:
                await self._collect(stage, batch)
            await self._run_batch(k, batch)

    async def _collect(self, stage: _Stage, batch: list[int]) -> None:
        """Add items to `batch` until it is full, `max_wait` has passed, or no more items can come."""
        spec, queue = stage.spec, stage.queue
        loop = asyncio.get_running_loop()
        deadline = None if spec.max_wait is None else loop.time() + spec.max_wait * self.run.scale
        while len(batch) < spec.batch:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            if stage.closed or (deadline is not None and deadline <= loop.time()):
                return
            try:
                async with asyncio.timeout_at(deadline) as timeout:
                    stage.collecting.add(timeout)
                    try:
                        batch.append(await queue.get())
                    finally:
                        stage.collecting.discard(timeout)
            except TimeoutError:  # max_wait passed, or the stage closed (one_less expires the timeout)
                return

    async def _run_batch(self, k: int, batch: list[int]) -> None:
        """Run stage k's steps once for `batch`, record it, then pass each item on (or fail them all)."""
        run, arun, stage = self.run, self.arun, self.stages[k]
        leader = batch[0]
        start = run.now()
        durs = batch_durations(run.sc, stage.node, batch)  # model units: steps() scales what it waits
        failure: Exception | None = None
        arun.batch_size[leader] = len(batch)
        try:
            await arun.steps(leader, durs, stage.node.body)
        except Exception as exc:  # a failing batch is a result: its items fail
            failure = exc
        finally:
            del arun.batch_size[leader]
        end = run.now()
        tb = run.tb
        tb.add(leader, stage.node.id, K_STAGE, stage.res, self.ready_at[leader], start, end, float(len(batch)))
        for i in batch[1:]:
            tb.add(i, stage.node.id, K_BATCH, stage.res, self.ready_at[i], start, end)
        last = k + 1 == len(self.stages)
        for i in batch:
            if failure is not None:
                run.fail(i, failure)
                for later in self.stages[k + 1:]:
                    later.one_less()
                self._finish(i)
            elif last:
                self._finish(i)
            else:
                self.ready_at[i] = end
                nxt = self.stages[k + 1]
                await nxt.queue.put(i)
                nxt.one_less()
