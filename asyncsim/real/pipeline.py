"""Pipelines run for real: the asyncio program a user writes, recording the simulator's trace.

One `asyncio.Queue(maxsize=stage.queue)` per stage and `workers` worker tasks per stage. A feeder puts each
arriving item into the first queue (a full queue blocks it; under asyncio:K a semaphore caps the items in the
pipeline). A worker takes an item, collects up to `batch` items (waiting at most `max_wait` s after the first,
or, unset, until the batch is full or no more items can come), runs the stage's steps once for the batch with
the real step interpreter, then puts each item into the next queue (backpressure). It mirrors
`asyncsim.sim.pipeline` decision for decision: the same batch draws (`_pipeline.batch_durations`), the same
end-of-input rule (items still to come per stage, failed ones included) and the same records.

A stage's `policy` makes its queue a `PolicyQueue` (an asyncio.Queue handing items out in a `WaitQueue`'s
order, as asyncio.PriorityQueue does with a heap). `hold: POOL` is the bug it models, written out:
`async with pool: ...steps...; await next_queue.put(item)`. `feedback` puts a returning item into an earlier
stage's queue along the route drawn up front (`_pipeline.routes`). A model that deadlocks is refused by the
simulator before a real run starts (`validate` simulates first); this runner would hang, as the program does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..policies import Policy
from ..rules.calls import StepFailedError
from ..rules.pipeline import Routing, batch_durations, item_ticket
from ..rules.queues import Ticket, WaitQueue
from ..rules.task import pool_timeout
from ..scenario import Node
from ..trace import K_ADMIT, K_USE
from .aio import AsyncRun

__all__ = ["PolicyQueue", "run_pipeline"]


class PolicyQueue(asyncio.Queue[int]):
    """An asyncio.Queue whose `get` returns items in `policy` order by `ticket(item)` (asyncio.PriorityQueue's
    recipe: `_init`, `_put` and `_get` over another container); put, get and maxsize behave as Queue's."""

    def __init__(self, maxsize: int, policy: Policy, ticket: Callable[[int], Ticket]) -> None:
        self._policy = policy
        self._ticket = ticket
        super().__init__(maxsize)

    def _init(self, maxsize: int) -> None:
        self._queue = WaitQueue(self._policy)

    def _put(self, item: int) -> None:
        self._queue.push(item, self._ticket(item))

    def _get(self) -> int:
        return self._queue.pop()


class _Stage:
    """A stage's queue and the items still to come into it (to flush a partial batch at the end of input)."""

    def __init__(self, node: Node, spec: Any, to_come: int, res: int, ticket: Callable[[int], Ticket]) -> None:
        self.node = node
        self.spec = spec
        self.queue: asyncio.Queue[int] = (asyncio.Queue(maxsize=spec.queue or 0) if spec.policy.kind == "fifo"
                                          else PolicyQueue(spec.queue or 0, spec.policy, ticket))
        self.to_come = to_come
        self.closed = to_come == 0
        # the timeouts of workers waiting to fill a batch, in the order they began to wait (a dict: a set's
        # order would make the end-of-input flush run them in an arbitrary order)
        self.collecting: dict[asyncio.Timeout, None] = {}
        self.res = res

    def one_less(self) -> None:
        """One item fewer will ever be put into this stage (it was put, or it failed upstream)."""
        self.to_come -= 1
        if self.to_come == 0:
            self.closed = True
            now = asyncio.get_running_loop().time()
            for timeout in self.collecting:  # no more items can come: stop waiting, run the partial batches
                # (a deadline not after now: Timeout.reschedule call_soons its expiry)
                timeout.reschedule(now)


async def run_pipeline(arun: AsyncRun) -> None:
    """Run the scenario's pipeline on the running loop with `arun`'s steps, limit and executor."""
    await _Pipeline(arun).main()


class _Pipeline(Routing[_Stage]):
    def __init__(self, arun: AsyncRun) -> None:
        self.arun = arun
        self.run = run = arun.run
        workload = run.sc.workload
        assert workload.stages is not None
        n = run.sc.n_tasks
        counts = self._init_routes(run.sc)
        self.stages = [_Stage(node, workload.stages[node.name], counts[k],
                              run.tb.resource_id(f"stage:{node.name}"), self._ticket)
                       for k, node in enumerate(run.sc.programs[0].steps)]
        self.finished = 0
        self.all_done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.users_waiting: dict[int, asyncio.Future[None]] = {}  # closed workloads: a user waits for its item
        if n == 0:
            self.all_done.set_result(None)

    def _ticket(self, i: int) -> Ticket:
        return item_ticket(float(self.run.arrival[i]))

    async def main(self) -> None:
        """Start the workers and the feeder (or the users), and return when every item is done or failed."""
        sc = self.run.sc
        tasks = [asyncio.create_task(self._worker(k)) for k, stage in enumerate(self.stages)
                 for _ in range(stage.spec.workers)]
        if sc.arrivals is not None:
            tasks.append(asyncio.create_task(self._feed()))
        else:
            counter = [0, 0]
            users = sc.users
            tasks += [asyncio.create_task(self._user(counter)) for _ in range(users)]
        pending: set[asyncio.Future[Any]] = {self.all_done, *tasks}
        try:
            while not self.all_done.done():
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for t in done:  # a feeder ends normally; a worker or user that ends has crashed
                    if t is not self.all_done and (exc := t.exception()) is not None:
                        raise exc
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # --------------------------------------------------------------------------------------- arrivals

    async def _feed(self) -> None:
        run = self.run
        assert run.sc.arrivals is not None  # an open workload
        for i, t in enumerate(run.sc.arrivals.tolist()):
            delay = run.t0 + t * run.scale - run.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            run.arrival[i] = t  # an item arrives when it is due, however late the feeder runs (as in `aio`)
            await self._enter(i)

    async def _user(self, counter: list[int]) -> None:
        run = self.run
        while (think := run.think(counter)) is not None:
            await asyncio.sleep(think * run.scale)
            i = run.submitted(counter)
            done = self.users_waiting[i] = asyncio.get_running_loop().create_future()
            await self._enter(i)
            await done

    async def _enter(self, i: int) -> None:
        """Admit item i (asyncio:K) and put it into the first stage's queue, waiting while it is full."""
        run, limit = self.run, self.arun.limit
        ready = run.arrival[i]
        if limit is not None:
            await limit.acquire()
            ready = run.now()
            if ready > run.arrival[i]:  # it waited for the feeder or for a slot: admitted when it got one
                run.tb.add(i, -1, K_ADMIT, self.arun.admit_res, run.arrival[i], ready, ready)
        self.ready_at[i] = ready
        stage = self.stages[0]
        await stage.queue.put(i)
        stage.one_less()

    def _item_failed(self, i: int, exc: BaseException) -> None:
        self.run.fail(i, exc)

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
                    stage.collecting[timeout] = None
                    try:
                        batch.append(await queue.get())
                    finally:
                        stage.collecting.pop(timeout, None)
            except TimeoutError:  # max_wait passed, or the stage closed (one_less expires the timeout)
                return

    async def _run_batch(self, k: int, batch: list[int]) -> None:
        """Run stage k's steps once for `batch` (holding a pool slot with `hold`), record it, then pass each
        item on along its route (or fail them all)."""
        run, arun, stage = self.run, self.arun, self.stages[k]
        leader = batch[0]
        start = run.now()
        durs = batch_durations(run.sc, stage.node, batch)  # model units: steps() scales what it waits
        failure: Exception | None = None
        hold = stage.spec.hold
        sem = None
        if hold is not None:
            try:
                sem, got = await self._hold(stage, leader), run.now()
            except StepFailedError as exc:
                failure = exc
        try:
            if failure is None:
                try:
                    await arun.steps(leader, durs, stage.node.body, len(batch))
                except Exception as exc:  # a failing batch is a result: its items fail
                    failure = exc
            for i, to in self._batch_ended(run.tb, stage.node.id, stage.res, batch, start, run.now(), failure):
                nxt = self.stages[to]
                await nxt.queue.put(i)  # with `hold`, still holding the pool's slot: the modelled bug
                nxt.one_less()
        finally:
            if sem is not None:
                sem.release()
                run.tb.add(leader, stage.node.id, K_USE, run.pool_res[hold], start, got, run.now())

    async def _hold(self, stage: _Stage, leader: int) -> Any:
        """Take a slot of the stage's `hold` pool for the batch `leader` leads (`async with pool:` around the
        rest); returns the semaphore to release.

        Raises:
            StepFailedError: the pool's timeout passed first (as the simulator words it).
        """
        run, pool = self.run, stage.spec.hold
        sem, timeout = self.arun.pools[pool]
        asked = run.now()
        try:
            async with asyncio.timeout(None if timeout is None else timeout * run.scale):
                if isinstance(sem, asyncio.Semaphore):
                    await sem.acquire()
                else:  # a pool with a policy: a semaphore serving its waiters by their tickets
                    await sem.acquire(self._ticket(leader))
        except TimeoutError:
            now = run.now()
            run.tb.add(leader, stage.node.id, K_USE, run.pool_res[pool], asked, now, now)
            assert timeout is not None  # only a pool with a timeout gives up waiting
            raise StepFailedError(pool_timeout(pool, timeout)) from None
        return sem
