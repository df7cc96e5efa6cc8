"""The asyncio driver of a real run: tasks are coroutines on one event loop, as a user writes them.

`io` is `asyncio.sleep`, `cpu` calibrated Python run on the loop (or `run_in_executor` with an offload),
pools and the asyncio limit are real `asyncio.Semaphore`s (policy-aware ones for a policy other than FIFO),
`parallel` is `asyncio.gather`, and a call's server is the emulated one of `service`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from concurrent.futures import Executor
from typing import Any

from ..rules.calls import BATCH, CONNECT, LIMIT, LOCAL_CPU, SERVE, SLEEP
from ..rules.task import ACQUIRE, CPU_WORK, FORK, IO_WAIT, steps
from ..scenario import Node
from ..strategies import Strategy
from ..trace import K_ADMIT, K_CPU
from . import _workers
from .run import Run
from .sched import AsyncPolicySemaphore

__all__ = ["AsyncRun"]


class AsyncRun:
    def __init__(self, run: Run, strategy: Strategy, executor: Executor | None) -> None:
        self.run = run
        w = run.sc.workload
        self.limit: Any = None
        cap = strategy.admission
        if cap:
            self.limit = (AsyncPolicySemaphore(cap, w.policy) if w.policy.kind != "fifo" and w.stages is None
                          else asyncio.Semaphore(cap))
        self.pools = {k: (AsyncPolicySemaphore(p.capacity, p.policy) if p.policy.kind != "fifo"
                          else asyncio.Semaphore(p.capacity), p.timeout) for k, p in w.pools.items()}
        self.services = run.services(asyncio=True)
        self.executor = executor
        self.rules = run.rules(self.services, self._release)
        tb = run.tb
        self.admit_res = tb.resource_id("limit")
        self.exec_res = tb.resource_id("executor") if executor is not None else tb.resource_id("loop")

    async def main(self) -> None:
        run, sc = self.run, self.run.sc
        tasks: list[asyncio.Task[None]] = []
        if sc.arrivals is not None:
            for i, t in enumerate(sc.arrivals.tolist()):
                delay = run.t0 + t * run.scale - run.clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                # a task arrives when it is due, even when it is created late (a late timer, or a busy loop
                # that runs this coroutine late): its latency counts the wait, as the simulator's does
                run.arrival[i] = t
                tasks.append(asyncio.create_task(self.task(i, self._queue(i))))
        else:
            counter = [0, 0]
            users = sc.users
            tasks = [asyncio.create_task(self.user(counter)) for _ in range(users)]
        await asyncio.gather(*tasks)

    async def user(self, counter: list[int]) -> None:
        """A closed-loop user: think, submit a task, wait for it, until every task is submitted."""
        run = self.run
        while (think := run.think(counter)) is not None:
            await asyncio.sleep(think * run.scale)
            i = run.submitted(counter)
            await self.task(i, self._queue(i))

    def _queue(self, i: int) -> Any:
        """Task i arrives: under a policy it takes its place in the admission queue now, as it arrives (its
        coroutine first runs later, maybe after a slot was handed on); the slot request to wait for."""
        return self.limit.request(self.run.ticket(i)) if isinstance(self.limit, AsyncPolicySemaphore) else None

    async def task(self, i: int, request: Any = None) -> None:
        run = self.run
        if self.limit is not None:
            if isinstance(self.limit, AsyncPolicySemaphore):
                await self.limit.wait(request)
            else:
                await self.limit.acquire()
            admitted = run.now()
            if admitted > run.arrival[i]:
                run.add(i, -1, K_ADMIT, self.admit_res, run.arrival[i], admitted, admitted)
        try:
            await self.steps(i, run.durations(i), run.steps(i))
        except Exception as exc:  # a failing task is a result, not a crash
            run.fail(i, exc)
        finally:
            if self.limit is not None:
                self.limit.release()
        run.done[i] = run.now()  # not reached when interrupted: the task stays unfinished

    async def steps(self, i: int, durs: list[float], nodes: tuple[Node, ...], size: int = 1) -> None:
        """Run task i's `nodes` on the loop (`size` items ride on each call: a pipeline batch)."""
        await self.drive(i, steps(self.rules, i, durs, nodes, size))

    async def drive(self, i: int, commands: Generator[Any, Any, None]) -> None:
        """Carry out task i's commands (`rules.task.steps`) on the loop: waits are `asyncio.sleep` of the
        scaled durations, CPU work is calibrated Python run here (or in the executor).

        Raises:
            StepFailedError: a step failed (the interpreter's error, passed on); or what a step hook raised.
        """
        run = self.run
        scale = run.scale
        reply: Any = None
        while True:
            try:
                op, value, subject = commands.send(reply)
            except StopIteration:
                return
            reply = None
            if op in (CPU_WORK, LOCAL_CPU):  # LOCAL_CPU: the client's own, on the loop
                if self.executor is not None and op == CPU_WORK:
                    submitted = run.now()
                    loop = asyncio.get_running_loop()
                    start, end, cpu = await loop.run_in_executor(
                        self.executor, _workers.timed_burn, run.cpu.iterations(value * scale))
                    run.tb.add(i, subject.id, K_CPU, self.exec_res, submitted, run.model_time(start),
                               run.model_time(end), cpu / scale)
                    continue
                start = run.now()
                cpu = run.cpu.run(value * scale)
                run.tb.add(i, subject.id, K_CPU, self.exec_res, start, start, run.now(), cpu / scale)
            elif op == IO_WAIT:
                reply = run.now()
                await asyncio.sleep(value * scale)
            elif op == SLEEP:
                await asyncio.sleep(value * scale)
            elif op == SERVE:
                if subject.queue is not None:
                    reply = await subject.queue.serve(run.now, scale, value, run.ticket(i))
                    continue
                served, answered = subject.schedule.reserve(run.now(), value)
                await asyncio.sleep(max(0.0, answered - run.now()) * scale)
                reply = served
            elif op == CONNECT:
                await subject.connections.acquire()
            elif op == ACQUIRE:
                reply = await self._acquire(i, value)
            elif op == FORK:
                # every branch finishes (gather with return_exceptions), then the interpreter raises the first
                results = await asyncio.gather(*(self.drive(i, b) for b in value), return_exceptions=True)
                reply = [r if isinstance(r, BaseException) else None for r in results]
            elif op == LIMIT:
                await subject.limiter.acquire(value, run.ticket(i), run.now, scale)
            elif op == BATCH:
                reply = await subject.batcher.serve(run.now, scale)
            # BLOCK and RESUME: this coroutine is running already

    async def _acquire(self, i: int, pool: str) -> tuple[float, bool]:
        """A slot of `pool` for task i: (when it asked, whether it got one before the pool's timeout)."""
        run = self.run
        sem, timeout = self.pools[pool]
        asked = run.now()
        try:
            async with asyncio.timeout(None if timeout is None else timeout * run.scale):
                await _acquire(sem, run, i)
        except TimeoutError:
            return asked, False
        return asked, True

    def _release(self, _i: int, node: Node) -> None:
        self.pools[node.name][0].release()


async def _acquire(sem: Any, run: Run, i: int) -> None:
    """Take a slot of an asyncio semaphore, with task i's ticket when it orders its waiters by policy."""
    if isinstance(sem, AsyncPolicySemaphore):
        await sem.acquire(run.ticket(i))
    else:
        await sem.acquire()
