"""Pipelines on the simulation clock: stages of worker coroutines joined by bounded queues.

Each stage has `workers` coroutines on the event loop (the strategy is asyncio). A worker takes an item from
its stage's queue (collecting up to `batch` items, waiting at most `max_wait` s after the first), runs the
stage's steps once for them, then puts each item into the next stage's queue, waiting while it is full
(backpressure). One feeder coroutine puts admitted items into the first queue, in order. An item's task ends
when it leaves the last stage.

The queues behave as `asyncio.Queue`: a put or a get that cannot proceed waits; the put or get that frees it
only wakes the waiter, which takes its slot or item when it next runs on the loop (behind the coroutines
already ready), and waits again if another coroutine got there first. A queue hands its items out in its
stage's policy order (a `WaitQueue`). This mirrors `asyncsim.real.pipeline`.

A stage with `hold: POOL` takes a slot of POOL once it has its items and gives it back after putting them on;
a stage with `feedback` puts a returning item into an earlier stage's queue (`_pipeline.routes`). A run that
stops with items unfinished is a deadlock: `waits()` names the workers ("stage parse worker 0") waiting to
put into a full queue ("queue:check", held by that stage's workers) or for a pool slot, and who holds it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import simpy

from ..policies import Policy
from ..rules.calls import StepFailedError
from ..rules.pipeline import Routing, batch_durations, item_ticket
from ..rules.queues import Ticket, WaitQueue
from ..rules.task import pool_timeout, steps
from ..scenario import Node
from ..trace import K_ADMIT, K_USE
from .cpu import JOIN, SOON, TIMER, SimThread, Strand, compute
from .engine import Engine
from .resources import Slots

__all__ = ["PipelineEngine"]


class _Queue:
    """asyncio.Queue's state: items (in policy order), and the getters and putters waiting (events fired to
    wake them)."""

    __slots__ = ("maxsize", "items", "ticket", "getters", "putters")

    def __init__(self, maxsize: int | None, policy: Policy, ticket: Callable[[int], Ticket]) -> None:
        self.maxsize = maxsize
        self.items = WaitQueue(policy)
        self.ticket = ticket if policy.kind != "fifo" else None
        self.getters: deque[simpy.Event] = deque()
        self.putters: deque[simpy.Event] = deque()

    def full(self) -> bool:
        """No room for another item (never, when unbounded)."""
        return self.maxsize is not None and len(self.items) >= self.maxsize

    def put_nowait(self, item: int) -> None:
        """Add an item and wake the first waiting getter."""
        if self.ticket is None:
            self.items.push(item)
        else:
            self.items.push(item, self.ticket(item))
        _wake_next(self.getters)

    def get_nowait(self) -> int:
        """Take the next item by the policy and wake the first waiting putter."""
        item = self.items.pop()
        _wake_next(self.putters)
        return item


def _wake_next(waiters: deque[simpy.Event]) -> None:
    while waiters:
        event = waiters.popleft()
        if not event.triggered:
            event.succeed()
            return


class _StageState:
    """A stage's queue, its workers' names, and how many more items will come into it (to flush a partial
    batch at the end of input)."""

    def __init__(self, env: simpy.Environment, node: Node, spec: Any, to_come: int, res: int,
                 ticket: Callable[[int], Ticket]) -> None:
        self.node = node
        self.spec = spec
        self.queue = _Queue(spec.queue, spec.policy, ticket)
        self.to_come = to_come
        self.closed = env.event()
        self.res = res
        self.workers = [f"stage {node.name} worker {w}" for w in range(spec.workers)]
        if to_come == 0:
            self.closed.succeed()

    def one_less(self) -> None:
        """One item fewer will ever be put into this stage (it was put, or it failed upstream)."""
        self.to_come -= 1
        if self.to_come == 0:
            self.closed.succeed()


class PipelineEngine(Engine, Routing[_StageState]):
    """The engine for a workload with `stages`: items flow through stage workers instead of running alone."""

    MAIN_ON_LOOP = False  # the feeder admits items as they arrive

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        workload = self.sc.workload
        assert workload.stages is not None
        program = self.sc.programs[0]
        counts = self._init_routes(self.sc)
        self.stages = [
            _StageState(self.env, node, workload.stages[node.name], counts[k],
                        self.trace.resource_id(f"stage:{node.name}"), self._item_ticket)
            for k, node in enumerate(program.steps)
        ]
        self.backlog: deque[int] = deque()  # admitted items the feeder has not put yet
        self.feeder_idle: simpy.Event | None = None
        # for deadlock reports: who waits for what since when, who leads which batch, who holds which pool
        self.worker_waits: dict[str, tuple[str, float]] = {}
        self.running: dict[int, str] = {}
        self.hold_holders: dict[str, list[str]] = {name: [] for name in workload.pools}
        for k, stage in enumerate(self.stages):
            for who in stage.workers:
                self.env.process(self._worker(k, who))
        # on a loop, open arrivals come from one feeder coroutine that takes the asyncio:K slot itself
        # (real/pipeline.py _feed): `_open_source` is that coroutine; otherwise the feeder puts admitted items
        self.limit_slots: Slots | None = None
        self.feeds_on_loop = self.loop is not None and self.sc.arrivals is not None
        if self.feeds_on_loop:
            if self.limit is not None:
                self.limit_slots = Slots(self.env, self.limit, on_loop=True)
        else:
            self.env.process(self._feeder())

    def _item_ticket(self, i: int) -> Ticket:
        return item_ticket(float(self.arrival[i]))

    def _task(self, i: int, woke: int = SOON, thread: SimThread | None = None) -> Generator[Any, Any, None]:
        """An item is admitted: hand it to the feeder (pipelines run on the loop: no worker `thread`)."""
        env = self.env
        if env.now > self.arrival[i]:  # it waited for admission (asyncio:K caps the items in the pipeline)
            self.trace.add(i, -1, K_ADMIT, self.admit_res, self.arrival[i], env.now, env.now)
        self.ready_at[i] = env.now
        self.backlog.append(i)
        if self.feeder_idle is not None and not self.feeder_idle.triggered:
            self.feeder_idle.succeed()
        yield from ()

    def _open_source(self) -> Generator[Any, Any, None]:
        """The feeder coroutine on the loop: it sleeps until each item is due, takes its asyncio:K slot (an
        asyncio.Semaphore: see Slots) and puts it into the first queue, waiting while that is full."""
        if not self.feeds_on_loop:
            yield from super()._open_source()
            return
        env, stage, slots = self.env, self.stages[0], self.limit_slots
        assert self.sc.arrivals is not None  # an open workload
        s = self._new_strand()
        yield from self._resume(s)  # its first step
        for i, t in enumerate(self.sc.arrivals.tolist()):
            if t > env.now:
                self._leave(s)
                yield env.timeout(self._timer(t - env.now))
                s.woke = TIMER
                yield from self._resume(s)
            self.arrival[i] = t
            self.arrived = i + 1
            ready = t
            if slots is not None:
                event = slots.request()
                if event is not None:
                    self._leave(s)
                    self.worker_waits["feeder"] = ("limit", env.now)
                    yield event
                    del self.worker_waits["feeder"]
                    s.woke = SOON
                    yield from self._resume(s)
                    slots.resumed()
                ready = env.now
                if ready > t:  # it waited for the feeder or for a slot: admitted when it got one
                    self.trace.add(i, -1, K_ADMIT, self.admit_res, t, ready, ready)
            self.ready_at[i] = ready
            yield from self._put(stage, i, s, "feeder")
            stage.one_less()
        self._leave(s)

    def _item_failed(self, i: int, exc: BaseException) -> None:
        self.failed[i] = True
        self.errors[i] = str(exc)

    def _finish(self, i: int, worker: SimThread | None = None, ended: float | None = None) -> bool:
        if not self.feeds_on_loop:
            return super()._finish(i, worker, ended)
        self.done[i] = self.env.now if ended is None else ended
        if self.limit_slots is not None:
            self.limit_slots.release()
        return False

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
            yield from self._put(stage, i, s, "feeder")
            stage.one_less()

    def _resume(self, s: Strand, event: simpy.Event | None = None) -> Generator[Any, Any, None]:
        """A woken coroutine queues for the loop (or waits for `event`, its turn) and resumes (paying the loop's
        per-step overhead)."""
        if event is None:
            event = s.acquire()
        if event is not None:
            yield event
        s.holding = True
        if s.overhead:
            overhead, s.overhead = s.overhead, self.strand_overhead
            yield from compute(self.env, self.cores, s.thread, overhead)

    def _put(self, stage: _StageState, item: int, s: Strand, who: str) -> Generator[Any, Any, None]:
        """`await queue.put(item)` into `stage`'s queue, by `who`."""
        queue = stage.queue
        while queue.full():
            event = self.env.event()
            queue.putters.append(event)
            if s.holding:
                self._leave(s)
            self.worker_waits.setdefault(who, (f"queue:{stage.node.name}", self.env.now))
            yield event
            s.woke = SOON  # Queue._wakeup_next sets the putter's future; its callback call_soons the step
            yield from self._resume(s)
        self.worker_waits.pop(who, None)
        queue.put_nowait(item)

    def _worker(self, k: int, who: str) -> Generator[Any, Any, None]:
        stage = self.stages[k]
        queue = stage.queue
        s = self._new_strand()
        while True:
            while not len(queue.items):  # `await queue.get()`
                event = self.env.event()
                queue.getters.append(event)
                if s.holding:
                    self._leave(s)
                yield event
                s.woke = SOON
                yield from self._resume(s)
            batch = [queue.get_nowait()]
            if stage.spec.batch > 1:
                yield from self._collect(stage, batch, s)
            yield from self._run_batch(k, batch, s, who)

    def _collect(self, stage: _StageState, batch: list[int], s: Strand) -> Generator[Any, Any, None]:
        """Add items to `batch` until it is full, `max_wait` has passed, or no more items can come."""
        env, spec, queue = self.env, stage.spec, stage.queue
        deadline = None if spec.max_wait is None else env.now + spec.max_wait
        while len(batch) < spec.batch:
            if len(queue.items):
                batch.append(queue.get_nowait())
                continue
            if stage.closed.triggered or (deadline is not None and deadline <= env.now):
                return
            get = env.event()
            queue.getters.append(get)
            timer = None if deadline is None else env.timeout(self._timer(deadline - env.now))  # a loop timer
            stop = stage.closed if timer is None else stage.closed | timer
            if s.holding:
                self._leave(s)
            yield get | stop
            if get.triggered:  # a put set the getter's future, whose callback call_soons the worker's step
                s.woke = SOON
                yield from self._resume(s)
                continue
            # the stage closed (Timeout.reschedule(now) call_soons the expiry: 2 hops), or the timer fell due
            closed = stage.closed.triggered and (timer is None or not timer.processed)
            if not (yield from self._timed_out(queue, get, s, JOIN if closed else TIMER)):
                return

    def _timed_out(self, queue: _Queue, get: simpy.Event, s: Strand, wake: int) -> Generator[Any, Any, bool]:
        """`asyncio.timeout_at` fell due (TIMER), or the stage closed, which reschedules it to now (a
        call_soon'ed expiry), while the worker waits in `queue.get()`: the expiry's handle cancels the wait when
        the loop runs it. A put while a timer's handle waits for the next iteration still sets the getter's
        future, whose wake-up runs first: the worker carries on collecting (True). Otherwise it stops (False);
        a put between the handle and the worker's step leaves the item queued and Queue.get passes the wake-up
        on to the next getter."""
        assert self.loop is not None
        loop, cancelled = self.loop, False

        def cancel() -> None:
            nonlocal cancelled
            cancelled = True
            if not get.triggered:
                queue.getters.remove(get)

        def put_first(_event: simpy.Event) -> None:
            if not cancelled:
                loop.hasten(turn)

        turn = loop.acquire(wake, on_due=cancel)
        get.callbacks.append(put_first)
        yield from self._resume(s, turn)
        if cancelled and get.triggered and len(queue.items):  # woken, then cancelled: Queue.get's except clause
            _wake_next(queue.getters)
        return not cancelled

    def _run_batch(self, k: int, batch: list[int], s: Strand, who: str) -> Generator[Any, Any, None]:
        """Run stage k's steps once for `batch` (holding a pool slot with `hold`), record it, then pass each
        item on along its route (or fail them all)."""
        env, tb, stage = self.env, self.trace, self.stages[k]
        leader = batch[0]
        start = env.now
        durs = batch_durations(self.sc, stage.node, batch)
        failure: StepFailedError | None = None
        self.running[leader] = who
        held: tuple[float, float] | None = None
        if stage.spec.hold is not None:
            hold = yield from self._hold(stage, leader, s, who)
            if isinstance(hold, StepFailedError):
                failure = hold
            else:
                held = hold
        if failure is None:
            try:
                yield from self._drive(leader, steps(self.rules, leader, durs, stage.node.body, len(batch)), s)
            except StepFailedError as exc:
                failure = exc
        del self.running[leader]
        if not s.holding:  # the worker resumes after its last step (or the exception), as a coroutine does
            yield from self._enter(s, leader, stage.node.id)
        for i, to in self._batch_ended(tb, stage.node.id, stage.res, batch, start, env.now, failure):
            nxt = self.stages[to]
            yield from self._put(nxt, i, s, who)
            nxt.one_less()
        if held is not None:
            self._unhold(stage, leader, who, *held)

    def _hold(self, stage: _StageState, leader: int,
              s: Strand, who: str) -> Generator[Any, Any, tuple[float, float] | StepFailedError]:
        """Take a slot of the stage's `hold` pool: (asked, got), or the pool timeout's error."""
        env, name = self.env, stage.spec.hold
        slots, res, timeout = self.pools[name]
        asked = env.now
        event = slots.request(self._item_ticket(leader) if slots.queue is not None else None)
        if event is not None:
            if s.holding:
                self._leave(s)
            self.worker_waits[who] = (f"pool:{name}", asked)
            if timeout is None:
                yield event
            else:
                yield event | env.timeout(timeout)
            del self.worker_waits[who]
            s.woke = SOON
            if timeout is not None and not event.triggered and slots.cancel(event):
                s.woke = TIMER
                self.trace.add(leader, stage.node.id, K_USE, res, asked, env.now, env.now)
                return StepFailedError(pool_timeout(name, timeout))
            if slots.woken is not None:
                yield from self._resume(s)
                slots.resumed()
        self.hold_holders[name].append(who)
        return asked, env.now

    def _unhold(self, stage: _StageState, leader: int, who: str, asked: float, got: float) -> None:
        name = stage.spec.hold
        slots, res, _ = self.pools[name]
        self.hold_holders[name].remove(who)
        slots.release()
        self.trace.add(leader, stage.node.id, K_USE, res, asked, got, self.env.now)

    def waits(self) -> tuple[dict[str, tuple[str, float]], dict[str, list[str]]]:
        """The base engine's waits and holders with a batch's waits and pool slots named by the worker running
        it, plus workers (and the feeder) waiting to put into a full queue or for a `hold` slot; a full queue
        `queue:X` is held by stage X's workers, the only ones who can take from it."""
        task_waits, task_holders = super().waits()
        named = {f"task {i}": who for i, who in self.running.items()}
        by_worker = {named.get(t, t): w for t, w in task_waits.items()}
        by_worker.update(self.worker_waits)
        order = [who for stage in self.stages for who in stage.workers] + ["feeder"]
        waits = {who: by_worker.pop(who) for who in order if who in by_worker}
        waits.update(by_worker)  # items waiting outside a stage's batch (none today), after the workers
        holders: dict[str, list[str]] = {}
        for res, tasks in task_holders.items():
            holders[res] = [named.get(t, t) for t in tasks]
        for name, workers in self.hold_holders.items():
            if workers:
                holders[f"pool:{name}"] = holders.get(f"pool:{name}", []) + workers
        for res, who in list(holders.items()):
            holders[res] = sorted(who, key=lambda w: order.index(w) if w in order else len(order))
        for stage in self.stages:
            if stage.queue.full():
                holders[f"queue:{stage.node.name}"] = list(stage.workers)
        return waits, holders

    noun = "items"

    def _stuck_notes(self, unfinished: np.ndarray, waits: dict[str, tuple[str, float]]) -> list[str]:
        """How full each queue is; the rest of the items are held by the workers above or await admission."""
        queued = [f"queue:{st.node.name} {len(st.queue.items)}/{st.spec.queue or 'inf'}" for st in self.stages
                  if len(st.queue.items)]
        if not queued:
            return []
        return [f"  items in queues: {', '.join(queued)}; the rest are held by the workers above or wait for "
                "admission"]

    def _capacities(self) -> dict[str, int | None]:
        caps = super()._capacities()
        caps.update({f"stage:{s.node.name}": s.spec.workers for s in self.stages})
        return caps
