"""The discrete-event engine: executes a Scenario under a Strategy on a Machine and records a Trace.

A task's code runs on a *strand*: a coroutine on the event loop (asyncio) or a thread (sequential,
threads, processes). Before running any Python a strand must `enter` (get the loop, or its GIL) and it
`leave`s whenever it blocks (I/O, a call, a full pool, a join). Tasks are admitted lazily, so a batch of a
million tasks behind a limit costs two integers (the queue is a range of task numbers), not a million live
generators.
"""

from __future__ import annotations

import gc
import math
from collections import deque
from collections.abc import Callable, Generator
from typing import Any, cast

import numpy as np
import simpy

from ..errors import DeadlockError, RunLimitError
from ..rules.calls import CONNECT, LIMIT, LOCAL_CPU, SERVE, SLEEP, StepFailedError
from ..rules.queues import Ticket, Tickets, WaitQueue
from ..rules.task import ACQUIRE, BLOCK, CPU_WORK, FORK, INLINE, IO_WAIT, RESUME, Context, no_calls, steps
from ..rules.timers import timed_wait
from ..scenario import Node, Scenario
from ..spec import Machine
from ..strategies import Strategy
from ..trace import K_ADMIT, K_CPU, K_RESUME, CallLog, RunOutput, Trace, TraceBuilder

__all__ = ["Engine"]
from .cpu import (
    CROSS,
    JOIN,
    PAID,
    SOON,
    TIMER,
    Cores,
    CoroStrand,
    Gil,
    Loop,
    SimThread,
    Strand,
    ThreadStrand,
    compute,
    race_won,
)
from .driver import TaskDriver, run_until_empty
from .resources import SimService, Slots, WorkQueue, capacities


class Engine:
    """Executes one Scenario on the simulation clock: admission, strands, the task interpreter's commands."""

    MAIN_ON_LOOP = True  # on a loop, a main coroutine creates the tasks, each takes its FIFO slot itself (_admit)

    def __init__(self, scenario: Scenario, machine: Machine, fold: Callable[[Trace], None] | None = None) -> None:
        self.sc = scenario
        self.machine = machine
        self.env = env = simpy.Environment()
        self.trace = tb = TraceBuilder(fold)  # a fold: a summary-only run, its records folded as they are made
        n = scenario.n_tasks
        self.arrival = np.full(n, math.nan)
        self.done = np.full(n, math.nan)
        self.programs = [p.steps for p in scenario.programs]
        on_loop = scenario.strategy.on_loop
        self.pools = {name: (Slots(env, p.capacity, p.policy, on_loop=on_loop), tb.resource_id(f"pool:{name}"),
                             p.timeout) for name, p in scenario.workload.pools.items()}
        self.tickets = Tickets(scenario)
        policy = scenario.workload.policy
        self.admission = WaitQueue(policy) if policy.kind != "fifo" else None
        # for deadlock reports: what each blocked task waits on (and since when), who holds each pool slot
        self.blocked: dict[simpy.Event, tuple[int, str, float]] = {}  # by the awaited event: branches may wait
        self.holders: dict[str, list[int]] = {name: [] for name in scenario.workload.pools}
        self.services = {name: SimService(name, spec, env, tb) for name, spec in scenario.workload.services.items()}
        self.calls = CallLog() if self.services else None
        # what the task interpreter (rules.task) needs of this engine: its clock, recorders, services and pools
        self.rules = Context(clock=lambda: env.now, add=tb.add, log=self.calls.add if self.calls else no_calls,
                             services=self.services, pools={k: (res, t) for k, (_, res, t) in self.pools.items()},
                             release=self._release)
        self.failed = np.zeros(n, dtype=bool)
        self.errors: dict[int, str] = {}
        self.overshoot = machine.sleep_overshoot_s
        self.granularity = machine.timer_granularity_s
        self.dispatch = 0.0  # per task sent to a worker process (processes:N)
        self.turnaround = 0.0  # a worker's time between a task and the next one already queued (processes:N)
        self.offload_dispatch = 0.0  # per CPU step sent to an executor process (asyncio+processes:N)
        self.offload_return = 0.0  # per CPU step, from the process ending it to the coroutine's wake-up
        self.job_turnaround = 0.0  # an executor thread's own CPU after each job (Machine.thread_turnaround_s)
        self.task_turnaround = 0.0  # threads:N: a pool worker's own CPU after each task (the same field)
        self.job_submit = 0.0  # the loop's CPU per run_in_executor to a thread pool (Machine.thread_submit_s)
        self.job_woke = JOIN  # how a coroutine comes back from an executor job (PAID: its result's handle costs)
        self.race_idle = math.inf  # a loop idle this long loses every race at a result's write (loop_race_idle_s)
        self.race_wins = machine.loop_race_wins  # the share of the other races it wins
        self.leg_cores = [-1, -1]  # the core each parent thread of a process offload last ran on
        self.busy_wake = 0.0  # a parent thread's wake-up while every core runs a worker's job (Machine.busy_wake_s)
        self.jobs_computing = 0  # CPU steps computing in a pool's worker processes now (where pool_wake is set)
        # an idle pool worker's wake-up for a job while another of the pool's workers computes
        # (Machine.process_wake_busy_s), processes:N and asyncio+processes:N
        self.pool_wake = 0.0
        self.pool_counts = False  # a blocking pool counts its workers' CPU steps in jobs_computing, for pool_wake
        self.fresh_workers = 0  # a pool's workers not woken for a job yet (their first is not late: _worker_wake)
        self.pool_start = 0.0  # starting the workers' pool (processes:N; workers x process_start_s), first submit
        self.offload_start = 0.0  # the same for the executor's pool (asyncio+processes:N), held by the loop
        self.pool_startup: float | None = None  # how long it takes (None: no process pool), for the output
        self.pool_up: simpy.Event | None = None  # fires when it has started (processes:N)
        self.pool_up_at = 0.0  # when that is
        self.executor: tuple[Slots, deque[SimThread], int] | None = None
        self.executor_workers = 0  # the executor's max_workers
        self.work_queue: WorkQueue | None = None  # a ThreadPoolExecutor's jobs and idle workers (asyncio+threads:N)
        self.asleep: dict[SimThread, float] = {}  # when each of its workers asleep on the queue's lock began to sleep
        self.waking: set[SimThread] = set()  # its workers woken by that lock that have not got the GIL since
        # a blocking pool's workers, idle ones first, when each keeps to its core (Machine.core_balance_s)
        self.pool_workers: deque[SimThread] | None = None
        self.unstarted = 0  # a thread pool's workers not started yet (ThreadPoolExecutor starts them lazily):
        #                     the executor's (asyncio+threads:N), or the workers' (threads:N, open arrivals)
        self.races = 0  # wake-ups of the idle loop by a worker's self-pipe write that races the worker for the GIL
        self.idle_workers = 0  # its _idle_semaphore: one more after every job, one less per submit that finds it
        self.loop: Loop | None = None
        self.gil: Gil | None = None
        self._setup(scenario.strategy, machine, any(p.has_parallel for p in scenario.programs))
        self.free = self.limit
        # On a loop, a FIFO limit is an asyncio.Semaphore the task acquires in its first step, when the loop
        # runs it, not when it arrives: tasks waiting for a slot (in the order they asked) in `gate`.
        self.main_on_loop = self.loop is not None and self.MAIN_ON_LOOP
        self.gate = (Slots(env, self.limit, on_loop=True) if self.main_on_loop and self.limit is not None
                     and self.admission is None else None)
        if self.gate is not None:
            assert self.loop is not None
            self.loop.first = self._first_step
            self.gate.handoff = self._admitted
        self.since = np.zeros(n if self.gate is not None else 0)  # when a task waiting at the gate began to wait
        # Tasks arrive in index order and queue for admission only behind each other, so the queue is
        # always range(queue_head, arrived).
        self.queue_head = 0
        self.arrived = 0
        self.closed_users: list[simpy.Event | None] = []

    # ------------------------------------------------------------------------------- strategy setup

    def _setup(self, strategy: Strategy, m: Machine, fans_out: bool) -> None:
        """The loop, GIL, cores and executor that `strategy` runs tasks with (it answers what they are)."""
        env, tb = self.env, self.trace
        self.strand_overhead = 0.0
        self.task_create = 0.0
        self.block_step = 0.0  # a task's first step that waits at its limit (_first_step)
        self.scan = 0.0  # per woken waiter a release of the limit walks past (_scan)
        self.thread_start = m.thread_start_s  # Thread.start(): a branch thread, a pool's worker
        self.limit = strategy.admission
        off = strategy.executor
        if strategy.on_loop:
            self.task_create = m.task_create_s
            self.admit_res = tb.resource_id("limit")
            if strategy.threaded and m.gil:  # the loop thread and the executor's threads share one GIL
                self.gil = _gil(env, m)
            self.loop = Loop(env, SimThread(self.gil))
            # a loop's timer falls due on time; the idle loop wakes for it late from select() (Loop._select_late)
            self.loop.granularity, self.loop.overshoot = m.timer_granularity_s, m.sleep_overshoot_s
            self.granularity = self.overshoot = 0.0
            self.exec_res = tb.resource_id("loop")
            self.strand_overhead = m.loop_step_s
            self.block_step = m.loop_step_s if m.loop_block_s is None else m.loop_block_s
            self.scan = m.semaphore_scan_s
            runners = 1
            if off is not None:
                self.executor_workers = off.workers
                if strategy.dispatching:
                    workers = deque(SimThread(self.gil) for _ in range(off.workers))
                    self.executor = (Slots(env, off.workers), workers, tb.resource_id("executor"))
                else:  # a ThreadPoolExecutor starts a thread per submit while none is idle (_adjust_thread_count)
                    # (its jobs wait in `work_queue`: the executor's slots and idle workers stay empty)
                    self.executor = (Slots(env, 0), deque(), tb.resource_id("executor"))
                    self.work_queue = WorkQueue()
                    self.unstarted = off.workers
                    self.job_turnaround = m.thread_turnaround_s
                    self.job_submit = m.thread_submit_s
                    self.race_idle = m.loop_race_idle_s or math.inf
                    if m.thread_return_s > 0:  # the result's _set_state handle costs the loop that much
                        self.loop.hop_cost = m.thread_return_s
                        self.job_woke |= PAID
                    if m.loop_wake_s > 0:  # the result's self-pipe write wakes the idle loop that much later
                        self.loop.cross_wake = m.loop_wake_s
                        self.job_woke |= CROSS
                    if m.loop_read_s > 0:  # and the next iteration's select() queues the self-pipe's reader
                        self.loop.read_cost = m.loop_read_s
                        self.job_woke |= CROSS
                runners = (0 if self.gil is not None else off.workers) + 1
                if strategy.dispatching:
                    self.offload_dispatch = m.process_dispatch_s
                    self.offload_start = self.pool_startup = off.workers * m.process_start_s
                    self.offload_return = m.process_return_s
                    self.pool_wake = m.process_wake_busy_s
                    self.fresh_workers = off.workers
                    if m.busy_wake_s > 0:
                        self.busy_wake = m.busy_wake_s
                        self.loop.wake_delay = self._busy_wake
                    # the parent's side of each round trip (pickling, the pool's threads) computes too
                    runners = off.workers + (1 if m.loop_step_s > 0 or m.process_dispatch_s > 0 else 0)
            self.cores = self.loop.cores = Cores(env, m.cores, shared=runners > m.cores, balance=m.core_balance_s)
            return
        self.admit_res = tb.resource_id("workers")
        assert self.limit is not None  # a blocking strategy has a worker count
        self.fork_threads = strategy.forks
        if strategy.threaded:
            self.exec_res = tb.resource_id("gil") if m.gil else -1
            # a released GIL reaches a waiting thread one wake-up later, as under asyncio + threads
            self.gil = _gil(env, m) if m.gil else None
            if self.gil is not None and self.sc.arrivals is not None and self.sc.workload.policy.kind == "fifo":
                self.unstarted = self.limit  # the main thread starts the pool's threads as it submits tasks
                self.work_queue = WorkQueue()  # ... into its work queue, where idle workers sleep (WorkQueue)
            self.strand_overhead = m.thread_switch_s if m.gil else 0.0
            self.task_turnaround = m.thread_turnaround_s if m.gil else 0.0
            shared = not m.gil and (fans_out or self.limit > m.cores)
        elif strategy.dispatching:
            self.dispatch = m.process_dispatch_s
            self.turnaround = m.process_turnaround_s
            self.pool_wake = m.process_wake_busy_s
            self.pool_counts = self.pool_wake > 0
            self.fresh_workers = self.limit
            self.pool_start = self.pool_startup = self.limit * m.process_start_s
            shared = self.limit > m.cores or (fans_out and not m.gil)
            self.exec_res = tb.resource_id("cores") if shared else -1
        else:
            self.exec_res = -1
            shared = False
        self.cores = Cores(env, m.cores, shared=shared, balance=m.core_balance_s)
        if self.cores.queues:  # a worker process (or thread) is one OS thread, on the core it last ran on
            self.pool_workers = deque(SimThread(None) for _ in range(self.limit))

    def _new_strand(self, thread: SimThread | None = None) -> Strand:
        """Where a new task runs: a coroutine on the loop, or a worker thread (`thread`, holding the GIL, when
        the worker that ended a task goes straight on to this one)."""
        if self.loop is not None:
            s: Strand = CoroStrand(self.loop)
        else:
            s = ThreadStrand(SimThread(self.gil) if thread is None else thread)
            s.holding = thread is not None
        s.res = self.exec_res
        s.overhead = self.strand_overhead  # its creator's step paid for creating its task (`_main_runs`, forks)
        return s

    def _fork(self, parent: Strand) -> Strand | None:
        """A strand for a parallel branch, or None when branches run inline (sequential)."""
        if isinstance(parent, CoroStrand):
            return self._new_strand()
        if not self.fork_threads:
            return None
        assert isinstance(parent, ThreadStrand)
        if parent.thread.gil is None and self.machine.gil:
            # a process that fans out into threads gets a GIL its parent holds now
            gil = Gil(self.env, self.machine.switch_interval_s)
            gil.holder = parent.thread
            parent.thread.gil = gil
            parent.res = self.trace.resource_id("gil")
        child = ThreadStrand(SimThread(parent.thread.gil))
        child.res, child.overhead = parent.res, parent.overhead
        return child

    # ------------------------------------------------------------------------------------ admission

    def ticket(self, i: int) -> Ticket:
        """What a scheduling policy knows about task i: its class's priority, weight and expected work, and
        its absolute deadline."""
        return self.tickets(i, float(self.arrival[i]))

    def _arrive(self, i: int, woke: int = SOON, at: float | None = None, thread: SimThread | None = None) -> None:
        now = self.env.now
        self.arrival[i] = now if at is None else at
        self.arrived = i + 1
        if self.main_on_loop and self.admission is None and now > self.arrival[i]:
            # created late by a main coroutine that the busy loop held up: a wait for the loop
            self.trace.add(i, -1, K_RESUME, self.exec_res, self.arrival[i], now, now)
        if self.gate is not None:  # the task takes its slot itself, when its first step runs (_first_step)
            self.since[i] = now
            assert self.loop is not None  # a gate is on a loop
            self.loop.call(i, woke)
        elif self.free is None or self.free > 0:  # then nobody queues: queue_head == i
            if self.free is not None:
                self.free -= 1
            self.queue_head = i + 1
            TaskDriver(self.env, self._task(i, woke, thread))
        elif self.admission is not None:
            self.admission.push(i, self.ticket(i))

    def _finish(self, i: int, worker: SimThread | None = None, ended: float | None = None) -> bool:
        """Task i ended (at `ended`, default now): the next admitted task starts (on `worker`, a thread holding the
        GIL, if given: a ThreadPoolExecutor worker's `work_queue.get()` returns a queued task without blocking, so
        it keeps the GIL). True when `worker` went on to another task."""
        self.done[i] = self.env.now if ended is None else ended
        if worker is not None:
            self.idle_workers += 1  # the worker's _idle_semaphore.release() after each task
        # on a loop, the admitted task's first step is call_soon'ed behind wake-ups its finisher caused before
        urgent = self.loop is None
        handed = False
        if self.gate is not None:
            self.gate.release()
        elif worker is not None and self.work_queue is not None:
            # a blocking pool's worker calls work_queue.get(): the next queued task, or it sleeps (letting the GIL go)
            self._get_job(worker)
            handed = True
        elif self.admission is not None and len(self.admission):
            TaskDriver(self.env, self._task(self.admission.pop(), thread=worker), urgent=urgent)
            handed = worker is not None
        elif self.admission is None and self.queue_head < self.arrived:
            TaskDriver(self.env, self._task(self.queue_head, thread=worker), urgent=urgent)
            self.queue_head += 1
            handed = worker is not None
        elif self.free is not None:
            self.free += 1
        if self.closed_users:
            user = self.closed_users[i]
            if user is not None:
                user.succeed()
        return handed

    def _open_source(self) -> Generator[Any, Any, None]:
        env, arrive = self.env, self._arrive
        assert self.sc.arrivals is not None  # an open workload
        if self.unstarted and self.loop is None:
            yield from self._submit_to_thread_pool()
            return
        if not self.main_on_loop:
            for i, t in enumerate(self.sc.arrivals.tolist()):
                if t > env.now:
                    yield env.timeout(t - env.now)
                arrive(i)
            return
        # The main coroutine creates the tasks (AsyncRunner.main): it sleeps until the next arrival (a loop
        # timer, late as sleeps are), and when the loop runs it, creates every task due by then in one step,
        # paying `task_create` for each (asyncio.create_task: a task's first step is call_soon'ed, so it runs
        # after main's step, behind what was ready before). A task arrives at its due time, whenever it was created.
        assert self.loop is not None
        main = CoroStrand(self.loop)
        arrivals = self.sc.arrivals.tolist()
        i, n = 0, len(arrivals)
        main.woke = SOON  # asyncio.run call_soons main's first step
        while i < n:
            slept = arrivals[i] > env.now
            if slept:
                if main.holding:
                    self._leave(main)
                yield env.timeout(self._timer(arrivals[i] - env.now))
                main.woke = TIMER
            if slept or self.task_create:
                yield from self._main_runs(main)
            due = i
            while due < n and arrivals[due] <= env.now:
                due += 1
            if self.task_create:  # more may fall due meanwhile: the next round creates them, main still running
                yield from compute(env, self.cores, main.thread, (due - i) * self.task_create)
            for k in range(i, due):
                arrive(k, at=arrivals[k])
            i = due
        if main.holding:
            self._leave(main)

    def _submit_to_thread_pool(self) -> Generator[Any, Any, None]:
        """threads:N: the main thread submits each task at its arrival to a ThreadPoolExecutor (real/_workers.py
        run_threads): the task joins the pool's work queue, whose put wakes one worker asleep on its lock (WorkQueue:
        a burst wakes them one at a time; a woken worker takes the first queued task once it has the GIL), and the
        pool starts a worker while none is idle (`_starts_a_thread`). Each start blocks the main thread until the new
        worker has the GIL and has taken the first queued task: the main thread waits for the GIL before it submits
        the next task (a switch interval when that task begins with CPU). Submits that start no thread cost the main
        thread nothing here (it does not wait for the GIL for them: measured on open arrivals, waiting put the
        replayed latencies further off). (`free`, `queue_head` and `_arrive` are not used here.)"""
        env, gil, main = self.env, self.gil, SimThread(self.gil)
        assert gil is not None
        assert self.sc.arrivals is not None
        holding = False
        for i, t in enumerate(self.sc.arrivals.tolist()):
            if t > env.now:
                if holding:
                    gil.release(main)
                    holding = False
                yield env.timeout(t - env.now)
            if not holding and self._starts_a_thread(peek=True):
                # a submit that will start a thread: the main thread waits for the GIL first (a worker that ends its
                # task meanwhile is idle by then, and the submit wakes it instead)
                event = gil.acquire(main)
                if event is not None:
                    yield event
                holding = True
            self.arrival[i] = t  # due at t, submitted now (later, if the main thread waited for the GIL)
            self._submit(i)
            if not self._starts_a_thread():
                continue
            assert holding
            self.unstarted -= 1
            worker = SimThread(gil)
            if self.thread_start:  # creating the OS thread, until it runs
                yield from compute(env, self.cores, main, self.thread_start)
            gil.barge(main, worker)  # (not _new_thread_runs: see there)
            self._get_job(worker)
            event = gil.acquire(main)
            if event is not None:
                yield event
        if holding:
            gil.release(main)

    def _main_runs(self, main: CoroStrand) -> Generator[Any, Any, None]:
        """The main coroutine's step runs: it gets the loop, unless it holds it already."""
        if not main.holding:
            event = main.acquire()
            if event is not None:
                yield event
            main.holding = True

    def _create_users(self, counter: list[int]) -> Generator[Any, Any, None]:
        """The main coroutine creates the closed users' tasks (AsyncRunner.main), paying `task_create` for each on
        the loop; a user then runs its tasks in its own coroutine (awaits them: no task of their own)."""
        if self.task_create:
            assert self.loop is not None
            main = CoroStrand(self.loop)
            yield from self._main_runs(main)
            yield from compute(self.env, self.cores, main.thread, self.sc.users * self.task_create)
            self._leave(main)
        for _ in range(self.sc.users):
            self.env.process(self._closed_user(counter))

    def _closed_user(self, counter: list[int]) -> Generator[Any, Any, None]:
        think = self.sc.think
        assert think is not None
        n = think.size
        while counter[0] < n:
            k = counter[0]
            counter[0] += 1
            pause = float(think[k])
            yield self.env.timeout(pause)
            i = counter[1]
            counter[1] += 1
            done = self.closed_users[i] = self.env.event()
            self._arrive(i, TIMER if pause > 0 else SOON)  # the user's coroutine runs the task after its sleep
            yield done

    # ----------------------------------------------------------------------------------- execution

    def _task(self, i: int, woke: int = SOON, thread: SimThread | None = None) -> Generator[Any, Any, None]:
        env = self.env
        arrived = self.arrival[i]
        # a task the main coroutine created late waited for the loop, not for admission (recorded in _arrive)
        admitted_late = env.now > arrived and not (self.main_on_loop and self.admission is None)
        if admitted_late or self.dispatch or self.turnaround or self.pool_start:
            admitted = env.now
            sent = arrived  # when the task set off for a worker process
            if self.pool_start:  # the first submit starts the pool; every task waits for it
                if self.pool_up is None:
                    self.pool_up = env.timeout(self.pool_start)
                    self.pool_up_at = env.now + self.pool_start
                if not self.pool_up.processed:
                    yield self.pool_up
                sent = max(sent, self.pool_up_at)
            # ProcessPoolExecutor's management thread keeps a call queue of max_workers + 1 items
            # (Lib/concurrent/futures/process.py, 3.11: EXTRA_QUEUED_CALLS, add_call_item_to_queue) pickled into
            # the workers' pipe: a task that waited for a worker was on its way meanwhile, and the worker that
            # ends a task sends its result and reads the next one (`turnaround`). It starts when its trip ends or
            # after that turnaround, whichever is later. (The queue's bound is not modelled.)
            if (self.dispatch or self.turnaround) and (
                    wait := max(sent + self.dispatch, admitted + self.turnaround) - env.now) > 0:
                yield env.timeout(wait)
            if not admitted_late and (late := self._worker_wake()) > 0:  # an idle worker is woken for it
                yield env.timeout(late)
            if env.now > arrived:
                self.trace.add(i, -1, K_ADMIT, self.admit_res, arrived, admitted, env.now)
        s = self._new_strand(thread)
        if self.pool_workers:  # the idle worker that has waited longest takes it
            assert isinstance(s, ThreadStrand)
            s.thread = self.pool_workers.popleft()
        s.woke = woke
        yield from self._run(i, s)
        if self.pool_workers is not None:
            assert isinstance(s, ThreadStrand)
            s.thread.gil = None  # the GIL a fan-out gave the process was for that task's threads
            self.pool_workers.append(s.thread)

    def _run(self, i: int, s: Strand) -> Generator[Any, Any, None]:
        """Task i's steps on strand `s`, then its end (the task's code runs once more, and wakes the next)."""
        sc = self.sc
        t = sc.task_type[i]
        durs = sc.durations[t][sc.task_row[i]].tolist()
        try:
            yield from self._drive(i, steps(self.rules, i, durs, self.programs[t]), s)
        except StepFailedError as exc:
            self.failed[i] = True
            self.errors[i] = str(exc)
        if not s.holding:
            yield from self._enter(s, i, -1)
        if self.scan and self.gate is not None and self.gate.woken:
            yield from self._scan(i, s, self.gate.woken)
        # on the loop, the task's code wakes the next admitted one (limit.release()), then ends; a worker thread
        # holding the process's shared GIL takes the next queued task with it
        worker = s.thread if self.loop is None and self.gil is not None and s.thread.gil is self.gil else None
        ended = self.env.now
        if worker is not None and self.task_turnaround:
            # the pool's worker, holding the GIL, sets the task's future, releases its idle semaphore and takes
            # the next task from its queue (concurrent/futures/thread.py `_worker`, `_WorkItem.run`)
            yield from compute(self.env, self.cores, worker, self.task_turnaround)
        handed = self._finish(i, worker, ended)
        s.holding = False
        if not handed:
            s.release()

    # `await limit.acquire()` as a task's first step on the loop (an asyncio.Semaphore: see Slots). A task that
    # must wait for a slot is an event in the loop's ready queue and then in the gate's, not a live generator,
    # so a batch of a million tasks behind a limit stays small; its coroutine starts when it gets a slot.

    def _first_step(self, i: int) -> None:
        """Task i's first step runs (the loop is ours; it was ready since `since[i]`): take a slot, or queue."""
        assert self.gate is not None
        ready = float(self.since[i])
        cost = self.block_step
        if not self.gate.locked():
            self.gate.request()
            s = self._new_strand()
            s.holding = True
            TaskDriver(self.env, self._started(i, s, ready))
        elif cost:  # the step costs the loop that much before the task waits
            TaskDriver(self.env, self._first_cost(i, ready, cost))
        else:  # its wait for the loop and then for a slot is one admission record (as the real run sees it)
            self._queue_at_gate(i, ready)

    def _first_cost(self, i: int, ready: float, cost: float) -> Generator[Any, Any, None]:
        got = self.env.now
        assert self.loop is not None
        yield from compute(self.env, self.cores, self.loop.thread, cost)
        self.trace.add(i, -1, K_RESUME, self.exec_res, ready, got, self.env.now, cost)
        self._queue_at_gate(i, self.env.now)

    def _queue_at_gate(self, i: int, since: float) -> None:
        """Task i waits for a slot (it has waited since `since`); the loop runs on."""
        assert self.gate is not None
        assert self.loop is not None
        assert self.gate.locked()  # nothing ran on the loop since the first step found it locked
        self.since[i] = since
        self.gate.wait(i)
        self.loop.release()

    def _admitted(self, i: int, _event: simpy.Event) -> None:
        """Task i was handed a slot: its coroutine's step is call_soon'ed (the waiter's future was set)."""
        s = self._new_strand()
        event = s.acquire()  # queued now, in the order the slots were handed on
        TaskDriver(self.env, self._started(i, s, float(self.since[i]), event))

    def _started(self, i: int, s: Strand, ready: float, event: simpy.Event | None = None) -> Generator[Any, Any, None]:
        """Task i with a slot: it gets the loop (`event`, or it holds it), pays the step's overhead, runs."""
        if event is not None:
            yield event
            s.holding = True
            now = self.env.now  # it waited for a slot, then for the loop: admitted when its step runs
            self.trace.add(i, -1, K_ADMIT, self.admit_res, ready, now, now)
            ready = now
        yield from self._entered(s, i, -1, ready)
        if event is not None:
            gate = self.gate
            assert gate is not None
            woken = gate.woken or 0  # the gate is on the loop: never None
            if self.scan and woken > 1 and gate.in_use < gate.capacity:  # a free slot: the tail's release walk
                yield from self._scan(i, s, woken - 1)
            gate.resumed()  # acquire()'s tail: a free slot goes to the next waiter
        yield from self._run(i, s)

    # The limit's asyncio.Semaphore keeps a waiter handed a slot in its deque until that waiter's coroutine resumes
    # (the `finally: self._waiters.remove(fut)` in Semaphore.acquire), and _wake_up_next walks the deque from the
    # front for the first future not done: a release passes every waiter woken and not resumed yet (Slots.woken,
    # at most K). A pool's semaphore does the same, at most its capacity: a few passes, not charged.

    def _scan(self, i: int, s: Strand, woken: int) -> Generator[Any, Any, None]:
        """Task i's step (holding the loop) walks past `woken` waiters of the limit's semaphore."""
        got = self.env.now
        cost = woken * self.scan
        yield from compute(self.env, self.cores, s.thread, cost)
        self.trace.add(i, -1, K_RESUME, self.exec_res, got, got, self.env.now, cost)

    def _enter(self, s: Strand, i: int, step: int) -> Generator[Any, Any, None]:
        """Get the strand running; records the wait (and overhead) as a resume record."""
        env = self.env
        ready = env.now
        event = s.acquire()
        if event is not None:
            yield event
        s.holding = True
        if s.overhead or env.now > ready:  # else nothing to pay or record: no sub-generator on this common path
            yield from self._entered(s, i, step, ready)

    def _entered(self, s: Strand, i: int, step: int, ready: float) -> Generator[Any, Any, None]:
        """The strand got to run (it was ready since `ready`): pay its resumption overhead, record the wait."""
        env = self.env
        overhead = s.overhead
        if overhead:
            s.overhead = self.strand_overhead
            got = env.now
            yield from compute(env, self.cores, s.thread, overhead)
            self.trace.add(i, step, K_RESUME, s.res, ready, got, env.now, overhead)
        elif env.now > ready:
            self.trace.add(i, step, K_RESUME, s.res, ready, env.now, env.now)

    def _leave(self, s: Strand) -> None:
        s.holding = False
        s.release()

    def _drive(self, i: int, commands: Generator[Any, Any, None], s: Strand) -> Generator[Any, Any, None]:
        """Carry out task i's commands (`rules.task.steps`) on strand `s`, on the simulation clock.

        Raises:
            StepFailedError: a step failed (the interpreter's error, passed on).
        """
        env, tb = self.env, self.trace
        send = commands.send
        reply: Any = None
        while True:
            try:
                op, value, subject = send(reply)
            except StopIteration:
                return
            reply = None
            if op in (CPU_WORK, LOCAL_CPU):  # LOCAL_CPU: a client's own CPU, never offloaded
                ready = env.now
                overhead = 0.0
                if not s.holding:
                    # _enter() inlined, the hottest path; no resume record: the cpu record covers the wait
                    event = s.acquire()
                    if event is not None:
                        yield event
                    s.holding = True
                    overhead = s.overhead
                    if overhead:
                        s.overhead = self.strand_overhead
                        yield from compute(env, self.cores, s.thread, overhead)
                if self.executor is not None and op == CPU_WORK:
                    if self.offload_start:  # the first run_in_executor forks the pool's workers: the loop waits
                        yield from compute(env, self.cores, s.thread, self.offload_start)
                        overhead += self.offload_start
                        self.offload_start = 0.0
                    if self.job_submit:  # run_in_executor: executor.submit and wrap_future, on the loop
                        yield from compute(env, self.cores, s.thread, self.job_submit)
                        overhead += self.job_submit
                    if overhead or env.now > ready:
                        tb.add(i, subject.id, K_RESUME, s.res, ready, env.now - overhead, env.now, overhead)
                    if self.work_queue is not None:
                        job: simpy.Event | None = self.env.event()
                        self._submit(job)
                    else:
                        job = self.executor[0].request()
                    if self._starts_a_thread():  # the submit starts a worker thread; the job goes on meanwhile
                        offload = env.process(self._offload(i, subject.id, value, env.now, job))
                        yield from self._start_worker(s)
                        ended = cast(float, offload.value) if offload.triggered else env.now
                        if ended < env.now:  # the job ended before the loop thread got the GIL back: it waited
                            tb.add(i, subject.id, K_RESUME, s.res, ended, env.now, env.now)
                        self._leave(s)
                        yield offload
                        s.woke = self.job_woke
                        continue
                    self._leave(s)
                    yield from self._offload(i, subject.id, value, env.now, job)
                    s.woke = self.job_woke
                    continue
                got = env.now - overhead
                counted = self.pool_counts
                if counted:  # a blocking pool's worker process computes
                    self.jobs_computing += 1
                if s.thread.gil is None and not self.cores.shared:
                    yield env.timeout(value)  # compute() inlined for its commonest case: a core of its own
                else:
                    yield from compute(env, self.cores, s.thread, value)
                if counted:
                    self.jobs_computing -= 1
                tb.add(i, subject.id, K_CPU, s.res, ready, got, env.now, value + overhead)
            elif op == IO_WAIT:
                if not s.holding:
                    yield from self._enter(s, i, subject.id)
                self._leave(s)
                reply = env.now
                s.woke = TIMER if value > 0 else SOON  # sleep(0) only yields: its step is call_soon'ed
                yield env.timeout(self._timer(value))
            elif op == SLEEP:
                if s.holding:  # after a client's own CPU (LOCAL_CPU): awaiting lets the loop go
                    self._leave(s)
                s.woke = TIMER if value > 0 else SOON
                yield env.timeout(self._timer(value))
            elif op == BLOCK:
                if not s.holding:
                    yield from self._enter(s, i, subject.id)
                self._leave(s)
            elif op == SERVE:
                if s.holding:  # after a client's own CPU (LOCAL_CPU): awaiting lets the loop go
                    self._leave(s)
                s.woke = TIMER  # the client sleeps until the emulated server answers
                reply = yield from self._serve(i, value, subject)
            elif op == ACQUIRE:
                reply = yield from self._acquire(i, value, subject, s)
            elif op == RESUME:
                if not s.holding:
                    yield from self._enter(s, i, subject.id)
            elif op == FORK:
                reply = yield from self._fork_branches(i, value, subject, s)
            elif op == CONNECT:
                if s.holding:
                    self._leave(s)
                event = subject.connections.request()
                if event is not None:
                    s.woke = SOON  # a released connection's waiter (the pool's semaphore) is call_soon'ed
                    yield event
            elif op == LIMIT:
                if s.holding:
                    self._leave(s)
                event = subject.limiter.acquire(value, self.ticket(i))
                if event is not None:
                    s.woke = TIMER  # the limiter sleeps until its turn
                    yield event
            else:
                if s.holding:
                    self._leave(s)
                event = subject.batcher.submit()
                s.woke = TIMER  # the batch ends on a timer, whose callback sets every member's future
                reply = None if event is None else (yield event)

    def _serve(self, i: int, seconds: float, svc: SimService) -> Generator[Any, Any, Any]:
        """A slot of `svc`'s server for `seconds`: when it was served (or, preempted, its service slices)."""
        env = self.env
        if svc.preemptive is not None:
            return (yield svc.preemptive.serve(self.ticket(i), self._timer(seconds)))
        slots = svc.slots
        if slots is not None:
            event = slots.request(self.ticket(i) if slots.queue is not None else None)
            if event is not None:
                yield event
        served = env.now
        yield env.timeout(self._timer(seconds))
        if slots is not None:
            slots.release()
        return served

    def _acquire(self, i: int, pool: str, node: Node, s: Strand) -> Generator[Any, Any, tuple[float, bool]]:
        """A slot of `pool` for task i: (when it asked, whether it got one before the pool's timeout)."""
        env = self.env
        if not s.holding:
            yield from self._enter(s, i, node.id)
        slots, _, timeout = self.pools[pool]
        asked = env.now
        event = slots.request(self.ticket(i) if slots.queue is not None else None)
        if event is not None:
            self._leave(s)
            self.blocked[event] = (i, f"pool:{pool}", asked)
            s.woke = SOON  # a released semaphore sets the waiter's future, whose callback call_soons its step
            if timeout is None:
                yield event
            else:
                yield event | env.timeout(timeout)
                if not event.triggered and slots.cancel(event):
                    del self.blocked[event]
                    s.woke = TIMER  # asyncio.timeout's timer cancels the wait
                    return asked, False
            del self.blocked[event]
            if slots.woken is not None:
                assert isinstance(s, CoroStrand)  # woken only counts on a loop
                s.then = slots.resumed  # when the task's step runs again, which is the next thing it does
        self.holders[pool].append(i)
        return asked, True

    def _release(self, i: int, node: Node) -> None:
        """Task i gives back its slot of `node`'s pool (the interpreter's `Context.release`)."""
        self.holders[node.name].remove(i)
        self.pools[node.name][0].release()

    def _fork_branches(self, i: int, branches: list[Generator[Any, Any, None]], node: Node,
                       s: Strand) -> Generator[Any, Any, Any]:
        """Run a parallel step's branches on strands of their own (INLINE when they run on `s`, sequential);
        each branch's failure or None."""
        env = self.env
        if not s.holding:
            yield from self._enter(s, i, node.id)
        children = [self._fork(s) for _ in branches]
        strands = [c for c in children if c is not None]
        if not strands:
            return INLINE
        gil = s.thread.gil
        if isinstance(s, ThreadStrand) and gil is not None:
            # threading.Thread.start() blocks the parent on `_started.wait()` until the child runs: the child,
            # running, takes the GIL; the parent then waits for it behind the other waiters (measured: a task's
            # second branch starts 2-19 ms after its first while other threads compute)
            children_done = []
            for b, c in zip(branches, strands, strict=True):
                if self.thread_start:  # creating the OS thread, until the child runs
                    started = env.now
                    yield from compute(env, self.cores, s.thread, self.thread_start)
                    self.trace.add(i, node.id, K_RESUME, s.res, started, started, env.now, self.thread_start)
                gil.barge(s.thread, c.thread)
                c.holding = True
                children_done.append(env.process(self._branch(i, b, c)))
                event = gil.acquire(s.thread)
                if event is not None:
                    asked = env.now
                    yield event
                    self.trace.add(i, node.id, K_RESUME, s.res, asked, env.now, env.now)
            self._leave(s)  # t.join()
            joined = yield env.all_of(children_done)
            s.woke = JOIN
            return list(joined.values())
        if self.task_create:  # gather wraps each branch's coroutine in a task (create_task), on the parent's step
            started = env.now
            cost = len(strands) * self.task_create
            yield from compute(env, self.cores, s.thread, cost)
            self.trace.add(i, node.id, K_RESUME, s.res, started, started, env.now, cost)
        self._leave(s)
        joined = yield env.all_of([env.process(self._branch(i, b, c)) for b, c in zip(branches, strands, strict=True)])
        s.woke = JOIN
        return list(joined.values())

    def _branch(self, i: int, commands: Generator[Any, Any, None],
                s: Strand) -> Generator[Any, Any, StepFailedError | None]:
        failure = None
        if isinstance(s, CoroStrand):  # gather's create_task call_soons the branch behind earlier wake-ups
            yield self.env.event().succeed()
        try:
            yield from self._drive(i, commands, s)
        except StepFailedError as exc:
            failure = exc
        if not s.holding:
            yield from self._enter(s, i, -1)
        self._leave(s)
        return failure

    def _timer(self, wait: float) -> float:
        """How long a thread's timed wait (time.sleep) really lasts: rounded up to the timer granularity, plus the
        overshoot. A coroutine's wait is exact (granularity and overshoot are 0 under a loop): the loop's wake-up
        for its timer is late instead, by how long the loop has been idle (Loop._select_late)."""
        return timed_wait(wait, self.granularity, self.overshoot)

    def _starts_a_thread(self, *, peek: bool = False) -> bool:
        """Whether a submit to a ThreadPoolExecutor starts a worker thread: when none is idle and it has fewer
        than max_workers (Lib/concurrent/futures/thread.py, 3.11: `_adjust_thread_count`). `_idle_semaphore`
        counts one more after every job a worker ends, whether or not it then finds another; a submit that
        finds it above 0 counts it down and starts nothing (`peek`: the answer, counting nothing down)."""
        if self.idle_workers:
            if not peek:
                self.idle_workers -= 1
            return False
        return self.unstarted > 0

    def _start_worker(self, s: Strand) -> Generator[Any, Any, None]:
        """The loop thread starts an executor's worker thread: `Thread.start()` blocks it on `_started.wait()`
        until the new thread has the GIL (`_new_thread_runs`), which then takes the first queued job and keeps the GIL
        for it: the loop thread waits for it again, a switch interval when the job is CPU."""
        self.unstarted -= 1
        thread = SimThread(self.gil)
        gil = self.gil
        if self.thread_start:  # creating the OS thread, until it runs
            yield from compute(self.env, self.cores, s.thread, self.thread_start)
        if gil is not None:  # the loop thread blocks in Thread.start() until the new thread has the GIL
            yield from self._new_thread_runs(s.thread, thread)
        # it takes the first queued job, keeping the GIL, or sleeps if a worker that ended its job took it meanwhile
        self._get_job(thread)
        if gil is not None:
            event = gil.acquire(s.thread)
            if event is not None:
                yield event

    def _new_thread_runs(self, starter: SimThread, thread: SimThread) -> Generator[Any, Any, None]:
        """`starter`, holding the GIL, has created `thread` and blocks in `Thread.start()` (on `_started.wait()`,
        letting the GIL go) until `thread` has the GIL and sets `_started`. The new thread, running, takes it before
        the waiter that this release signals, unless that waiter is a thread the GIL was taken from (asleep on its
        condition variable): measured (a loop starting a pool's second worker, 30 runs), a worker forced off the GIL
        by the loop ran first in 15, and the new thread waited for its own switch interval; a worker just woken from
        the work queue's lock (`waking`) ran first in 5 of 40, and the new thread in the other 35. A blocking pool's
        main thread (threads:N) lets its new thread barge in: its waiters are workers back from I/O, and the rule made
        no difference to the suite's thread rows there (and the research's reference DES, tests/test_gil.py, barges)."""
        gil = starter.gil
        assert gil is not None
        if not gil.waiters or gil.waiters[0][0] in self.waking:
            gil.barge(starter, thread)
            return
        gil.release(starter)
        event = gil.acquire(thread)
        if event is not None:
            yield event

    def _submit(self, job: Any) -> None:
        """executor.submit to a thread pool: the job joins its work queue, and wakes a sleeping worker if the queue's
        lock lets it (WorkQueue). A job is an event, which fires with the worker thread that takes it, holding the
        GIL (an offloaded step), or a task's number, which starts on that worker (a blocking pool's task)."""
        assert self.work_queue is not None
        self._wake_worker(self.work_queue.put(job))

    def _wake_worker(self, thread: SimThread | None) -> None:
        """A worker asleep on the work queue's lock is handed it: its thread wakes as a GIL waiter's does (the
        hand-off's wake-up; the idle figure if it slept `thread_idle_after_s` or more), asks for the GIL, and gets a
        job once it has it."""
        if thread is None:
            return
        gil = thread.gil
        if gil is None:
            self._get_job(thread, woken=True)
            return
        self.waking.add(thread)
        wake = gil.wake_up(self.env.now - self.asleep.pop(thread, self.env.now))
        if wake > 0:
            self.env.timeout(wake).callbacks.append(lambda _e: self._ask(thread))
        else:
            self._ask(thread)

    def _ask(self, thread: SimThread, *, woken: bool = True) -> None:
        """A worker asks for the GIL, then for a job (`woken`: handed the queue's lock; else one that lost the GIL
        to the loop at its result's write)."""
        gil = thread.gil
        assert gil is not None
        event = gil.acquire(thread)
        if event is None:
            self._get_job(thread, woken=woken)
        else:
            event.callbacks.append(lambda _e: self._get_job(thread, woken=woken))

    def _get_job(self, thread: SimThread, *, woken: bool = False) -> None:
        """`thread`, holding the GIL (if any), calls `work_queue.get()`: it takes the first queued job (keeping the
        GIL; a task's number starts the task on it) or sleeps on the queue's lock (letting the GIL go)."""
        assert self.work_queue is not None
        self.waking.discard(thread)
        job, other = self.work_queue.get(thread, woken=woken)
        self._wake_worker(other)
        gil = thread.gil
        if job is None:
            self.asleep[thread] = self.env.now
            if gil is not None and gil.holder is thread:
                gil.release(thread)
            return
        if isinstance(job, int):
            TaskDriver(self.env, self._task(job, thread=thread))
        else:
            job.succeed(thread)

    def _offload(self, i: int, step: int, work: float, submitted: float,
                 event: simpy.Event | None) -> Generator[Any, Any, float]:
        """Run a CPU step on the executor (a worker thread or process) once its request (`event`, None when a
        worker was free) is served; the coroutine waits meanwhile. Returns when it ended.

        A worker thread that finishes a job while another waits takes it at once, mostly still holding the GIL (a
        ThreadPoolExecutor worker's `work_queue.get()` returns without blocking; only the result's self-pipe write
        releases it for a moment, which the loop, if that write wakes it from select(), wins a share of the time:
        `loop_race_wins`, unless it idled there `loop_race_idle_s` or longer): a loop thread already waiting for the GIL
        gets it only by a forced switch.
        """
        env = self.env
        assert self.executor is not None
        slots, workers, res = self.executor
        if event is not None:
            thread = yield event  # handed over by the worker that finished before (see below)
        else:
            thread = workers.popleft()
        if self.offload_dispatch:  # pickling and IPC, mostly the parent's CPU (its threads share the cores)
            if (late := self._busy_wake()) > 0:  # the management thread wakes for the job
                yield env.timeout(late)
            yield from self._parent_leg(0, self.offload_dispatch)
            if event is None and (late := self._worker_wake()) > 0:  # the idle worker is woken for the job
                yield env.timeout(late)
        gil = thread.gil
        if gil is not None and gil.holder is not thread:  # a worker thread runs the job once it has the GIL
            event = gil.acquire(thread)
            if event is not None:
                yield event
        started = env.now  # as the real runner records it: when the job's code began
        self.jobs_computing += 1
        yield from compute(env, self.cores, thread, work)
        ended = env.now
        if self.job_turnaround:  # the worker sets the result (call_soon_threadsafe) and takes the next job
            yield from compute(env, self.cores, thread, self.job_turnaround)
        late = self._busy_wake()  # whether every core was running a job as this one ended
        self.jobs_computing -= 1
        if self.work_queue is None:  # a process pool: the worker takes the next queued job, or idles
            if slots.waiting():
                slots.release(thread)
            else:
                workers.append(thread)
                slots.release()
        elif gil is not None and self.work_queue.jobs:
            # the result's call_soon_threadsafe writes to the loop's self-pipe, releasing the GIL for a moment: a loop
            # idle in select(), woken by this write, races the worker for it (race_won); a waiting thread does not
            loop = self.loop
            if loop is not None and not loop.busy and (not loop.turning or loop.wake_at is not None):
                self.races += 1
                if race_won(self.races, self.race_wins) and env.now - loop.idle_since < self.race_idle:
                    gil.barge(thread, loop.thread)
                    loop.cross_won = True
                else:
                    gil.blip()
            else:
                gil.blip()
            # its next work_queue.get() takes the first queued job, holding the GIL (if the loop took it at the
            # write, once it has it back)
            if gil.holder is thread:
                self._get_job(thread)
            else:
                self._ask(thread, woken=False)
        else:  # the queue is empty: it sleeps on the queue's lock and lets the GIL go
            self._get_job(thread)
        self.idle_workers += 1
        self.trace.add(i, step, K_CPU, res, submitted, started, ended, work)
        if self.offload_return:  # the worker is free; the result travels back (the management thread, the loop)
            if late > 0:  # the management thread wakes for the result
                yield env.timeout(late)
            yield from self._parent_leg(1, self.offload_return)
        return env.now

    def _parent_leg(self, role: int, work: float) -> Generator[Any, Any, None]:
        """`work` CPU seconds of the parent's side of an offload on the pool's thread that does it (`role` 0: the
        submit leg, the queue's feeder thread; 1: the return leg, the management thread), which starts on the core
        that thread last ran on (Machine.core_balance_s: traced, these threads wake there even while another
        core idles, benchmarks/core_balance.py)."""
        thread = SimThread(None)  # legs may overlap in the model: a SimThread each, sharing the role's core
        thread.core = self.leg_cores[role]
        yield from compute(self.env, self.cores, thread, work)
        self.leg_cores[role] = thread.core

    def _worker_wake(self) -> float:
        """How late an idle pool worker, woken for a job now, starts it: `pool_wake` while another of the pool's
        workers computes, else on time. Measured (calibrate._process_wake_busy): the woken worker mostly last ran
        on the core that worker computes on now, and Linux leaves it waiting there (EEVDF keeps the running task
        to its slice, kernel/sched/fair.c check_preempt_wakeup_fair) until that core's next scheduler tick, while
        the other core idles; a process that keeps to its own core (an unrelated CPU hog) is not delayed. A fresh
        worker's first job is not late: fork placed it, and the pool's first jobs start together."""
        if self.fresh_workers:
            self.fresh_workers -= 1
            return 0.0
        return self.pool_wake if self.jobs_computing else 0.0

    def _busy_wake(self) -> float:
        """How late a parent thread wakes now: `busy_wake` while every core runs a worker process's job (the
        parent's threads wait for a core, and for the GIL one of them holds), else on time."""
        return self.busy_wake if self.jobs_computing >= self.cores.count else 0.0

    # ---------------------------------------------------------------------------------------- run

    def run(self, *, max_sim_time: float | None = None, max_events: int | None = None) -> RunOutput:
        env, sc = self.env, self.sc
        if sc.arrivals is not None:
            env.process(self._open_source())
        else:
            n = sc.n_tasks
            self.closed_users = [None] * n
            counter = [0, 0]
            env.process(self._create_users(counter))
        gc_was_enabled = gc.isenabled()
        gc.disable()  # the run allocates many short-lived objects and no cycles worth collecting
        try:
            stopped = run_until_empty(env, until=max_sim_time, max_events=max_events)
        finally:
            if gc_was_enabled:
                gc.enable()
        unfinished = np.flatnonzero(np.isnan(self.done))
        if stopped is not None and unfinished.size:
            flag, value = (("--max-sim-time", f"{max_sim_time:g} s") if stopped == "max_sim_time"
                           else ("--max-events", f"{max_events}"))
            raise RunLimitError(
                f"stopped by {flag} {value} at t={env.now:.6g}s with {unfinished.size} of {sc.n_tasks} tasks "
                f"unfinished and {len(env._queue)} events pending; raise the limit if the run is meant to "  # noqa: SLF001
                "be this long", limit=stopped)
        if unfinished.size:
            raise self._deadlock(unfinished)
        events = next(env._eid)  # SimPy numbers every scheduled event  # noqa: SLF001
        return RunOutput(self.trace.build(), self.arrival, self.done, sc.task_type, self.failed, events,
                         self._capacities(), errors=self.errors,
                         calls=self.calls.build() if self.calls is not None else None,
                         pool_startup_s=self.pool_startup, engine="des")

    def waits(self) -> tuple[dict[str, tuple[str, float]], dict[str, list[str]]]:
        """Who waits for what (resource, since) and who holds each resource, for deadlock reports; an
        engine with more kinds of waits (pipelines) adds its own."""
        holders = {f"pool:{name}": [f"task {t}" for t in tasks] for name, tasks in self.holders.items() if tasks}
        return {f"task {t}": (res, since) for t, res, since in sorted(self.blocked.values())}, holders

    noun = "tasks"  # what a deadlock report counts (a pipeline's are items)

    def _deadlock(self, unfinished: np.ndarray) -> DeadlockError:
        """The report: who waits for what (held by whom, since when), what else is stuck, and the cycle."""
        waits, holders = self.waits()
        cycle = _find_cycle(waits, holders)
        lines = [f"deadlock at t={self.env.now:.6g}s: {unfinished.size} of {self.sc.n_tasks} {self.noun} can "
                 "never finish"]
        for who, (resource, since) in list(waits.items())[:10]:
            held = holders.get(resource)
            by = f" (held by {', '.join(held[:5])}{', ...' if len(held) > 5 else ''})" if held else ""
            lines.append(f"  {who} waits for {resource}{by} since t={since:.6g}s")
        if len(waits) > 10:
            lines.append(f"  ... and {len(waits) - 10} more waiting")
        lines += self._stuck_notes(unfinished, waits)
        if cycle:
            lines.append("  cycle: " + " -> ".join(cycle))
        return DeadlockError("\n".join(lines), time=self.env.now, waits=waits, holders=holders, cycle=cycle)

    def _stuck_notes(self, unfinished: np.ndarray, waits: dict[str, tuple[str, float]]) -> list[str]:
        """Lines on the unfinished work the waits above do not name."""
        others = unfinished.size - sum(w.startswith("task ") for w in waits)
        if others > 0:
            return [f"  {others} more unfinished tasks wait for admission, or in a queue behind those above"]
        return []

    def _capacities(self) -> dict[str, int | None]:
        caps = capacities(self.sc.workload, self.machine, self.limit)
        if self.executor is not None:
            caps["executor"] = self.executor_workers
        return caps


def _find_cycle(waits: dict[str, tuple[str, float]], holders: dict[str, list[str]]) -> list[str]:
    """A wait-for cycle, [waiter, resource, holder, resource, ..., waiter], or [] when there is none.

    `waits` maps a waiter ("task 3", "stage parse worker 0") to the resource it waits for; `holders` maps a
    resource to who holds it. Following "waits for, held by" from each waiter finds a cycle if one exists.
    """
    for start in waits:
        path, seen, node = [start], {start: 0}, start
        while node in waits:
            resource = waits[node][0]
            nxt = next(iter(holders.get(resource, [])), None)
            if nxt is None:
                break
            path += [resource, nxt]
            if nxt in seen:
                return path[seen[nxt]:]
            seen[nxt] = len(path) - 1
            node = nxt
    return []


def _gil(env: simpy.Environment, m: Machine) -> Gil:
    """The GIL of a run on machine `m`: its switch interval and the two hand-off figures."""
    return Gil(env, m.switch_interval_s, handoff=m.thread_switch_s, idle_handoff=m.thread_switch_idle_s,
               idle_after=m.thread_idle_after_s)
