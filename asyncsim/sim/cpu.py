"""Who may run Python when: the GIL with CPython's switch-interval rule, cores shared by processor sharing,
and the asyncio event loop as CPython runs it (iterations over a FIFO ready queue).

A `SimThread` is one OS thread of the client program. To run Python it must hold its process's `Gil`
(if the machine has one and the process can have more than one thread); while it computes it also
occupies a core of `Cores` (processor sharing when more threads compute than there are cores).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Generator
from functools import partial
from heapq import heappush
from typing import Any

import simpy

from ..rules.timers import timed_wait

__all__ = ["JOIN", "SOON", "TIMER", "Cores", "CoroStrand", "Gil", "Loop", "SimThread", "Strand", "ThreadStrand",
           "compute", "race_won"]

_EPS = 1e-12
# A worker thread's result wakes the idle loop from select() through the self-pipe (call_soon_threadsafe), the write
# releasing the GIL for a moment: the loop thread, woken by that very write, takes the GIL before the worker retakes
# it at a share of such wake-ups (Machine.loop_race_wins, spread evenly by race_won: every second at the default
# 1/2, the first lost) and loses the others (sim/engine.py _offload); a thread already waiting for the GIL only
# starts a fresh interval (Gil.blip), so a loop that lost waits until the worker runs out of jobs. Measured: a loop
# woken by one worker's backlog of 0.5 ms jobs lost the first race in 29 of 30 runs and then saw no result until the
# backlog drained. Who wins is decided by the kernel, not by CPython (benchmarks/loop_race.py): a loop on another
# core than the worker, idle in select() 0.2-1 ms, won 98% of such races; idle 3.5 ms or more, none (its core
# sleeps deeper: Machine.loop_race_idle_s); a worker woken by the loop's submit often shares the loop's core, and
# then the loop loses nearly all. calibrate measures both (calibrate.loop_race, one warm pool), and both move with
# the machine's state: the warm pool's loop won 26-30 races of 30 after idling 0.5-1.5 ms one morning, and the
# suite's recorded runs then replayed best with every second race won (mean |error| over 25 asyncio cases, eight
# runs each: 1.99% never, 1.55% every second, 1.66% every third); that afternoon it won none of 30 at any idle (the
# CI machine none of 20), and that day's recorded thread-offload runs replayed best with none (7.14% -> 5.72%).
# A prediction applies both (MachineProfile.machine_for).

# THE SELF-PIPE READER. An iteration's select(0) releases the GIL for a moment, and the self-pipe's reader
# (BaseSelectorEventLoop._read_from_self) calls recv twice, each releasing it again. A worker woken by a submit takes
# it at the reader in 9-39% of trials here, never at the select(0) (benchmarks/executor_order.py, part 4). Until
# 2026-12-06 the model handed the GIL over there whenever the signalled waiter had slept under 3 ms (a fitted
# Machine.loop_read_handoff_s): with every idle worker woken by each submit, as the model then had it, that put the
# 0.5 ms offload cases in the regime their slow runs take. With the work queue's real protocol (one sleeper woken at
# a time: sim/resources.py WorkQueue) the same recorded runs replay best without it, and the rule is gone: 0.5 ms jobs
# on 2 workers 8.8% -> 6.1% mean |T error| over 69 runs of 14 recorded sets (4 workers 6.3% -> 6.6%).


def race_won(n: int, share: float) -> bool:
    """Whether the loop wins the `n`-th race (from 1) at a worker's result write, winning `share` of them evenly
    spread: at 1/2 the second, fourth, ...; at 1/3 every third; at 0 none."""
    return math.floor(n * share + _EPS) > math.floor((n - 1) * share + _EPS)


class SimThread:
    """An OS thread: the GIL it needs (None when uncontended) and its state while computing."""

    __slots__ = ("gil", "wake", "remaining", "gen", "epoch", "dropped", "core")

    def __init__(self, gil: Gil | None) -> None:
        self.gil = gil
        self.core = -1  # the core it last computed on (Cores with `balance`; -1: none yet)
        self.wake: simpy.Event | None = None
        self.remaining = 0.0
        self.gen = 0  # bumped whenever the core-completion timer is rescheduled
        self.epoch = 0  # bumped for every slice of computing (GIL drop timers belong to one slice)
        self.dropped = False

    def done(self, gen: int) -> None:
        """Core-completion timer fired (ignored if rescheduled since)."""
        if gen == self.gen and self.wake is not None and not self.wake.triggered:
            self.dropped = False
            self.wake.succeed()

    def drop(self, epoch: int) -> None:
        """A GIL drop request for slice `epoch` (ignored if that slice is over)."""
        if epoch == self.epoch and self.wake is not None and not self.wake.triggered:
            self.dropped = True
            self.wake.succeed()


class Gil:
    """A global interpreter lock with CPython's rule (Python/ceval_gil.c, 3.11: take_gil, drop_gil).

    A waiter sleeps on the GIL's condition variable for `interval` seconds at a time; if no switch happened
    meanwhile it sets the drop request, and the computing holder drops the GIL at its next eval-breaker check
    and (FORCE_SWITCHING) waits until another thread has it. Who takes it is a race: drop_gil signals the
    condition variable, which wakes the longest waiter, while the thread that asked has just timed out and may
    be running. Measured (benchmarks/gil_handoff.py, three CPU-bound threads on 2 cores): the thread that asked
    won 180 of 286 forced switches, 50% to 71% per set of runs, the longest waiter the rest; the model gives
    two forced switches in three to the requester and the third to the longest waiter (`forced`), so a thread
    that wants the GIL while two others compute gets it at the latest at the third forced switch.
    A waiter whose interval saw a switch asks nothing and sleeps another interval. A holder that blocks (I/O)
    releases the GIL at once to the longest waiter, which runs `handoff` later (its thread wakes on the condition
    variable; Machine.thread_switch_s, measured). When the GIL has not changed hands for `idle_after`
    (Machine.thread_idle_after_s), the waiter's core has idled meanwhile (one thread runs Python at a time) and its
    wake-up takes `idle_handoff` (Machine.thread_switch_idle_s): on this 2-vCPU virtual machine 16-60 us after
    0.1 ms idle, 25-45 us or 150-180 us after 0.5-2 ms as the hypervisor is quiet or busy (calibrate). One that
    releases it for a moment (`blip`, a syscall such as the self-pipe write of call_soon_threadsafe) takes it back
    before the signalled waiter wakes, which then sleeps a fresh interval (the loop thread that this very write
    wakes from select() races it: race_won).
    drop_gil signals one waiter, and a woken waiter that finds the GIL taken waits again behind the others (the
    condition variable wakes them in the order they began waiting), so successive blips wake each in turn: a
    backlogged worker's writes every 0.5 ms keep both the loop and a second worker from ever asking (measured:
    the loop saw 197-200 of 200 results only after the backlog, on one worker or two).
    """

    def __init__(self, env: simpy.Environment, interval: float, handoff: float = 0.0, *,
                 idle_handoff: float | None = None, idle_after: float = math.inf) -> None:
        self.env = env
        self.interval = interval
        self.handoff = handoff  # from a release to its waiter running: the condition variable's wake-up
        # the same after `idle_after` without a switch: the waiter's core has idled, and wakes later
        self.idle_handoff = handoff if idle_handoff is None else idle_handoff
        self.idle_after = idle_after
        self.holder: SimThread | None = None
        self.computing = False  # the holder is inside compute()
        self.waiters: deque[list[Any]] = deque()  # [thread, event, since]: since = when its current wait began
        self.last_switch = 0.0
        self.drop_at = math.inf
        self.requester: list[Any] | None = None  # the waiter whose interval runs out first
        self.switches = 0
        self.forced = 0  # forced switches so far: every third goes to the longest waiter, the others to the asker

    def acquire(self, thread: SimThread) -> simpy.Event | None:
        """Take the GIL now (returns None) or get an event that fires when `thread` holds it."""
        if self.holder is None:
            self.holder = thread
            return None
        event = self.env.event()
        now = self.env.now
        waiter = [thread, event, now]
        self.waiters.append(waiter)
        if now + self.interval < self.drop_at:
            self.drop_at = now + self.interval
            self.requester = waiter
            self.schedule_drop()
        return event

    def release(self, thread: SimThread, *, forced: bool = False) -> None:
        """Give the GIL up: `forced`, to the waiter that asked for it two times in three; else (and the third time)
        to the longest waiter."""
        assert self.holder is thread, "released a GIL it does not hold"
        self.computing = False
        if self.waiters:
            waiter = self.waiters[0]
            if forced:
                self.forced += 1
                if self.forced % 3 and self.requester is not None:
                    waiter = self.requester
            self.waiters.remove(waiter)
            nxt, event, _ = waiter
            self.holder = nxt
            handoff = self.wake_up(self.env.now - self.last_switch)  # the waiter's core idled since the last switch
            self.last_switch = self.env.now
            self.switches += 1
            self._rearm()
            if handoff:  # the GIL is the waiter's, which runs once its thread has woken
                self.env.timeout(handoff).callbacks.append(lambda _e: event.succeed())
            else:
                event.succeed()
        else:
            self.holder = None
            self.drop_at = math.inf
            self.requester = None

    def wake_up(self, idle_for: float) -> float:
        """How long a thread blocked on a futex takes to run once signalled, its core idle for `idle_for`: `handoff`,
        or `idle_handoff` from `idle_after` on (a GIL waiter, or a worker woken from its queue's lock)."""
        return self.idle_handoff if idle_for >= self.idle_after - _EPS else self.handoff

    def barge(self, thread: SimThread, to: SimThread) -> None:
        """`thread` releases the GIL while `to` is running and wants it: `to` takes it before the signalled
        waiter wakes (take_gil finds it unlocked), and that waiter sleeps a fresh interval."""
        assert self.holder is thread, "released a GIL it does not hold"
        self.computing = False
        self.holder = to
        self.last_switch = self.env.now
        self.switches += 1
        self.blip()

    def blip(self) -> None:
        """The holder released and retook the GIL at once (a syscall): the signalled waiter, the longest, starts a
        fresh interval at the back of the condition variable's queue, so the next blip wakes the next waiter."""
        if self.waiters:
            waiter = self.waiters.popleft()
            waiter[2] = self.env.now
            self.waiters.append(waiter)
            self._rearm()

    def _expiry(self, t0: float) -> float:
        """When a waiter that started at t0 finds a full interval without a switch."""
        k = max(1, math.ceil((self.last_switch - t0) / self.interval - _EPS) + 1)
        return t0 + k * self.interval

    def _rearm(self) -> None:
        self.drop_at, self.requester = math.inf, None
        for waiter in self.waiters:
            at = self._expiry(waiter[2])
            if at < self.drop_at - _EPS:
                self.drop_at, self.requester = at, waiter
        self.schedule_drop()

    def schedule_drop(self) -> None:
        """Arm a timer that asks the computing holder to drop the GIL at `drop_at`."""
        holder = self.holder
        if holder is None or not self.computing or self.drop_at == math.inf:
            return
        epoch = holder.epoch
        timer = self.env.timeout(max(0.0, self.drop_at - self.env.now))
        timer.callbacks.append(lambda _ev: holder.drop(epoch))


class Cores:
    """`count` cores shared by the threads computing on them, by one of two rules beyond `count` threads.

    `balance` 0 (the ideal model): processor sharing over all the cores. `balance` > 0: Linux's per-core run
    queues. Each core shares itself among the threads placed on it; a thread computes on the core it last ran on
    (a new one on the core with the fewest), even while another core is idle; a core left idle takes a thread
    waiting on the busiest core only at the next load-balancing tick, a multiple of `balance` seconds.
    Traced with sched tracepoints (benchmarks/core_balance.py, 2 cores, EEVDF at HZ=250): 63-75% of the wake-ups
    whose last core was busy while the other idled stayed on it, and an idle core pulled a waiting task at 39-49%
    of the busy core's 4 ms ticks (kernel/sched/fair.c: select_task_rq_fair, nohz_balancer_kick).
    `shared` is False when no more threads than cores can ever compute at once: each computes at full speed.
    """

    def __init__(self, env: simpy.Environment, count: int, *, shared: bool, balance: float = 0.0) -> None:
        self.env = env
        self.count = count
        self.shared = shared
        self.running: list[SimThread] = []
        self.rate = 1.0
        self.t_mark = 0.0
        self.busy_time = 0.0
        self.balance = balance if shared else 0.0
        self.queues: list[list[SimThread]] = [[] for _ in range(count)] if self.balance > 0 else []
        self.rates = [1.0] * count
        self.pulling = False  # a balancing tick is due

    def start(self, thread: SimThread, work: float) -> None:
        """`thread` begins computing `work` CPU seconds; its wake event fires when they are done."""
        self._advance()
        thread.remaining = work
        if not self.queues:
            self.running.append(thread)
            self._rescale(new=thread)
            return
        core = thread.core
        if core < 0:
            core = thread.core = min(range(self.count), key=lambda c: len(self.queues[c]))
        self.queues[core].append(thread)
        self._retime(core, new=thread)
        self._balance_later()

    def stop(self, thread: SimThread) -> None:
        """`thread` leaves the cores (done, or preempted from the GIL); its remaining work is updated."""
        self._advance()
        if not self.queues:
            self.running.remove(thread)
            self._rescale(new=None)
            return
        self.queues[thread.core].remove(thread)
        self._retime(thread.core, new=None)
        self._balance_later()

    def _advance(self) -> None:
        now = self.env.now
        elapsed = now - self.t_mark
        if elapsed > 0 and self.queues:
            for core, threads in enumerate(self.queues):
                if threads:
                    rate = self.rates[core]
                    for t in threads:
                        t.remaining -= elapsed * rate
                    self.busy_time += elapsed
        elif elapsed > 0 and self.running:
            for t in self.running:
                t.remaining -= elapsed * self.rate
            self.busy_time += elapsed * self.rate * len(self.running)
        self.t_mark = now

    def _rescale(self, new: SimThread | None) -> None:
        k = len(self.running)
        rate = 1.0 if k <= self.count else self.count / k
        targets = self.running if rate != self.rate else ([new] if new is not None else [])
        self.rate = rate
        self._time(targets, rate)

    def _retime(self, core: int, new: SimThread | None) -> None:
        threads = self.queues[core]
        rate = 1.0 / len(threads) if threads else 1.0
        targets = threads if rate != self.rates[core] else ([new] if new is not None else [])
        self.rates[core] = rate
        self._time(targets, rate)

    def _time(self, targets: list[SimThread], rate: float) -> None:
        """(Re)arm each target's completion timer at `rate` (its earlier timer is ignored: `gen`)."""
        for t in targets:
            t.gen += 1
            gen = t.gen
            timer = self.env.timeout(max(0.0, t.remaining) / rate)
            timer.callbacks.append(partial(_done, t, gen))

    def _balance_later(self) -> None:
        """Arm the next balancing tick if a core is idle while another has a thread waiting."""
        if self.pulling or not self._imbalanced():
            return
        self.pulling = True
        now = self.env.now
        tick = (math.floor(now / self.balance + 1e-9) + 1) * self.balance
        self.env.timeout(max(0.0, tick - now)).callbacks.append(self._pull)

    def _imbalanced(self) -> bool:
        lengths = [len(q) for q in self.queues]
        return min(lengths) == 0 and max(lengths) >= 2

    def _pull(self, _event: simpy.Event) -> None:
        """A balancing tick: each idle core takes the thread that came last to the busiest core."""
        self.pulling = False
        self._advance()
        queues = self.queues
        for core in range(self.count):
            source = max(range(self.count), key=lambda c: len(queues[c]))
            if queues[core] or len(queues[source]) < 2:
                continue
            thread = queues[source].pop()
            thread.core = core
            queues[core].append(thread)
            self._retime(source, new=None)
            self._retime(core, new=thread)
        self._balance_later()


def _done(thread: SimThread, gen: int, _event: simpy.Event) -> None:
    thread.done(gen)


def compute(env: simpy.Environment, cores: Cores, thread: SimThread, work: float) -> Generator[Any, Any, None]:
    """Run `work` CPU seconds on `thread`, which holds its GIL (if any) on entry and on return."""
    gil = thread.gil
    if gil is None and not cores.shared:
        yield env.timeout(work)
        return
    remaining = work
    while True:
        thread.wake = env.event()
        thread.epoch += 1
        cores.start(thread, remaining)
        if gil is not None:
            gil.computing = True
            if gil.drop_at <= env.now + _EPS and gil.waiters:
                thread.drop(thread.epoch)
            else:
                gil.schedule_drop()
        yield thread.wake
        cores.stop(thread)
        remaining = thread.remaining
        if remaining <= _EPS * max(1.0, work) or not thread.dropped:
            thread.remaining = 0.0
            if gil is not None:
                gil.computing = False
            return
        # forced to drop the GIL: queue behind the waiter that asked, then carry on
        assert gil is not None
        gil.release(thread, forced=True)
        event = gil.acquire(thread)
        if event is not None:
            yield event


# How a suspended coroutine gets back into the loop's ready queue (CPython's asyncio): the number of ready-queue
# hops before its step runs, and whether the first is a timer the loop moves to ready only at its next iteration
# (BaseEventLoop._run_once). Each hop goes to the back of the queue.
DUE = 4
SOON = 1  # its step is call_soon'ed: a new task (Task.__init__), a semaphore's waiter woken (a future's callback)
JOIN = 2  # a callback that call_soons its step: gather's _done_callback after the last child; an executor job's
#           call_soon_threadsafe(_set_state) (futures._chain_future), then the future's callback
TIMER = DUE | 2  # sleep's call_later handle falls due, sets the future, whose done callback call_soons the step
PAID = 8  # its first hop costs the loop `Loop.hop_cost` (an executor thread's result: the _set_state handle)
CROSS = 16  # from another thread (call_soon_threadsafe): an idle loop wakes `Loop.cross_wake` late
_AFTER_NORMAL = 2  # a SimPy priority below NORMAL (1)


class Loop:
    """The asyncio event loop, as `BaseEventLoop._run_once` runs it (Lib/asyncio/base_events.py).

    An iteration first moves the timers that fell due to the back of the ready queue, then runs the handles
    ready at its start, FIFO, one at a time on the loop's thread; what they call_soon, and timers that fall due
    meanwhile, wait for the next iteration. A coroutine comes back after its wake-up's hops (SOON, JOIN,
    TIMER); a hop costs no time. The next handle runs once the instant has settled (every other event at it has
    happened), so all that the coroutine before it caused — wake-ups, new tasks — is queued first, in the order
    it was caused, as call_soon does synchronously. While it runs or iterates, the loop thread holds its GIL;
    each new iteration's select(0) releases it for a moment (a `Gil.blip`: a waiting thread, signalled, finds it
    retaken and sleeps a fresh interval, so a busy loop's iterations keep it from ever asking for a drop).
    Idle, it blocks in select(): a timer wakes it on epoll's millisecond grid from when it went idle
    (`_select_late`), a wake-up from another thread (call_soon_threadsafe) at once; the iteration whose select()
    finds such writes in the self-pipe runs its reader after the handles ready (`read_cost`).
    """

    def __init__(self, env: simpy.Environment, thread: SimThread) -> None:
        self.env = env
        self.thread = thread
        self.busy = False  # a coroutine is running
        self.turning = False  # an iteration is due (waiting for the instant to settle, or for the GIL)
        self.ready: deque[tuple[simpy.Event, int]] = deque()  # (the coroutine's event, hops left)
        self.due: list[tuple[simpy.Event, int]] = []  # woken by timers since the iteration began
        self.todo = 0  # handles of this iteration not yet run
        self.first: Callable[[int], None] | None = None  # runs task i's first step, for `call(i, ...)`
        self.on_due: dict[simpy.Event, Callable[[], None]] = {}  # run when a timer's handle runs (`acquire`)
        # how late the idle loop's thread wakes from select() now (None: on time, the ideal machine)
        self.wake_delay: Callable[[], float] | None = None
        # a timer's wake-up from select(): its timeout is rounded up to `granularity` from when the loop went idle
        # (`idle_since`), and the thread wakes `overshoot` after that (see `_select_late`)
        self.granularity = 0.0
        self.overshoot = 0.0
        self.idle_since = 0.0
        self.wake_at: float | None = None  # when the idle loop, woken, turns (None: not waking)
        # CPU seconds of a PAID wake-up's first hop (futures._chain_future's _set_state: a thread executor's result
        # copied to the awaited future) on the loop's thread, sharing `cores`; 0: hops cost nothing
        self.hop_cost = 0.0
        self.cores: Cores | None = None
        # how late the idle loop, blocked in select(), runs after another thread's call_soon_threadsafe writes to
        # its self-pipe (the thread's wake-up; a CROSS wake-up); 0: at once
        self.cross_wake = 0.0
        self.cross_won = False  # the loop won the GIL at the write that wakes it: it is running already
        # CPU seconds of the self-pipe's reader handle (Lib/asyncio/selector_events.py: _read_from_self, recv until
        # BlockingIOError), which the iteration whose select() finds another thread's writes queues behind the
        # handles already ready (_process_events -> _add_callback, before the timers that fell due)
        self.read_cost = 0.0
        self.unread = False  # another thread wrote to the self-pipe since the loop last read it
        self.wakes = 0  # counts scheduled wake-ups: a superseded one is void
        # fires once everything else at its instant has happened: scheduled at priority 2, after NORMAL (1), as
        # SimPy orders events by (time, priority, id); one event object, rescheduled (one settle is due at most)
        self._settled = settled = simpy.Event(env)
        settled._ok = True  # noqa: SLF001
        settled._value = None  # noqa: SLF001

    def acquire(self, wake: int = SOON, on_due: Callable[[], None] | None = None) -> simpy.Event:
        """An event that fires when this coroutine's turn comes, after it is woken by `wake`; its callbacks run
        at once then, with the loop held. `on_due` runs when a timer wake-up's handle runs (its first hop)."""
        event = self.env.event()
        if on_due is not None:
            self.on_due[event] = on_due
        if wake & DUE:
            self.due.append((event, wake & 3))
        else:
            self.ready.append((event, wake & (3 | PAID) if self.hop_cost else wake & 3))
        if wake & CROSS and self.read_cost:
            self.unread = True
        if not self.busy and (not self.turning or self.wake_at is not None):
            self._wake(wake & DUE, cross=wake & CROSS)
        return event

    def hasten(self, event: simpy.Event) -> bool:
        """A coroutine waiting for a timer's handle is woken sooner (call_soon): if the handle has not been
        moved to the ready queue yet, it comes back by the other wake-up; True when it did."""
        for k, (waiting, _hops) in enumerate(self.due):
            if waiting is event:
                del self.due[k]
                self.on_due.pop(event, None)
                self.ready.append((event, SOON))
                return True
        return False

    def call(self, task: int, wake: int = SOON) -> None:
        """Queue task `task`'s first step as a handle (run by `first`, with the loop held): a task that is only
        created costs an int in the ready queue, not an event and a generator."""
        if wake & DUE:
            self.due.append((task, wake & 3))  # type: ignore[arg-type]  # _next tells ints from events
        else:
            self.ready.append((task, wake))  # type: ignore[arg-type]
        if not self.busy and (not self.turning or self.wake_at is not None):
            self._wake()

    def release(self) -> None:
        """The running coroutine suspends: the iteration's next handle runs."""
        self.busy = False
        self._settle()  # what it did at this instant (wake-ups, new tasks) is queued before the next one runs

    def _wake(self, timer: int = 0, cross: int = 0) -> None:
        """The idle loop is woken: it turns once its thread runs, late by `wake_delay` and, for a timer, by
        `_select_late`, for another thread's wake-up by `cross_wake` (what is woken meanwhile joins the same
        iteration)."""
        delay = self.wake_delay() if self.wake_delay is not None else 0.0
        if timer:
            delay += self._select_late()
        elif cross:
            if self.cross_won:
                self.cross_won = False
            else:
                delay += self.cross_wake
        at = self.env.now + delay
        if self.wake_at is not None:  # already woken, for later: a sooner wake-up (the self-pipe) turns it now
            if at >= self.wake_at - 1e-12:
                return
            self.wakes += 1  # the later wake-up is void
        self.turning = True
        if delay <= 0:
            self.wake_at = None
            self._settle()
            return
        self.wake_at = at
        wakes = self.wakes
        self.env.timeout(delay).callbacks.append(lambda _event: self._woken(wakes))

    def _select_late(self) -> float:
        """How late the idle loop wakes for a timer falling due now. `_run_once` blocks in select() with the
        earliest timer's time left as its timeout, and the epoll selector rounds that up to whole milliseconds
        (Lib/selectors.py, EpollSelector.select: `math.ceil(timeout * 1e3) * 1e-3`), counted from when the loop
        went idle, not from when the timer was set; then the thread wakes `overshoot` late."""
        waited = self.env.now - self.idle_since  # the timeout select() was given: the timer is due now
        return max(0.0, timed_wait(waited, self.granularity, self.overshoot) - waited)

    def _woken(self, wakes: int) -> None:
        if wakes == self.wakes:
            self.wake_at = None
            self._settle()

    def _settle(self) -> None:
        self.turning = True
        env, event = self.env, self._settled
        event.callbacks = [self._turn]  # SimPy cleared them when it last fired
        heappush(env._queue, (env._now, _AFTER_NORMAL, next(env._eid), event))  # type: ignore[misc]  # noqa: SLF001

    def _turn(self, _event: simpy.Event) -> None:
        gil = self.thread.gil
        if gil is not None and gil.holder is not self.thread:
            event = gil.acquire(self.thread)
            if event is not None:
                event.callbacks.append(self._turn)
                return
        self.turning = False
        self._next()

    def _next(self) -> None:
        ready = self.ready
        while True:
            if not self.todo:
                if self.unread:  # select() finds the self-pipe readable: its reader runs after the ready handles
                    self.unread = False
                    ready.append((None, 1))  # type: ignore[arg-type]  # _next tells the reader by None
                if self.due:
                    ready.extend(self.due)
                    self.due.clear()
                self.todo = len(ready)
                gil = self.thread.gil
                if not self.todo:  # idle: the loop thread blocks in select() and lets the GIL go
                    self.idle_since = self.env.now
                    if gil is not None and gil.holder is self.thread:
                        gil.release(self.thread)
                    return
                if gil is not None and gil.waiters and gil.holder is self.thread:
                    gil.blip()  # the new iteration's select(0) releases the GIL for a moment
            event, hops = ready.popleft()
            self.todo -= 1
            if event is None:  # the self-pipe's reader
                self.busy = True
                self.env.process(self._work(self.read_cost))
                return
            if hops > 1:  # a callback that call_soons the next hop, at once (it costs no time)
                if hops & PAID:  # ... unless it does work first
                    self.busy = True
                    self.env.process(self._work(self.hop_cost, (event, (hops & 3) - 1)))
                    return
                if self.on_due and (due := self.on_due.pop(event, None)) is not None:
                    due()
                ready.append((event, hops - 1))
                continue
            self.busy = True
            if type(event) is int:  # a task's first step, registered by `call` (no event needed before)
                assert self.first is not None
                self.first(event)
                return
            # succeed it and run its callbacks here (this is an event's callback already, at the same
            # instant): the coroutine resumes without one more scheduled event per turn
            event._ok = True  # noqa: SLF001
            event._value = None  # noqa: SLF001
            callbacks, event.callbacks = event.callbacks, None  # type: ignore[assignment]  # processed
            for callback in callbacks:
                callback(event)
            return

    def _work(self, cost: float, then: tuple[simpy.Event, int] | None = None) -> Generator[Any, Any, None]:
        """A handle that costs the loop `cost` CPU seconds: the self-pipe's reader, or a PAID hop, which then
        call_soons the next hop (`then`)."""
        assert self.cores is not None
        yield from compute(self.env, self.cores, self.thread, cost)
        if then is not None:
            self.ready.append(then)
        self.busy = False
        self._settle()


class Strand:
    """Where a piece of task code runs (a coroutine or a thread); `holding` is True while it may run Python."""

    __slots__ = ("holding", "res", "overhead", "woke")
    thread: SimThread  # the OS thread its code runs on (the loop's, for a coroutine)

    def __init__(self) -> None:
        self.holding = False
        self.woke = SOON  # how a coroutine is woken from its current wait (a thread ignores it)
        self.res = -1  # the trace resource a wait to run is recorded against
        self.overhead = 0.0  # CPU seconds each resumption costs

    def acquire(self) -> simpy.Event | None:
        """Run now (None), or an event fired when this strand may run Python."""
        raise TypeError(f"{type(self).__name__} must say how it gets to run")

    def release(self) -> None:
        """Stop running Python (block, or end); the next waiter may run."""
        raise TypeError(f"{type(self).__name__} must say how it stops running")


class CoroStrand(Strand):
    """A coroutine on the event loop."""

    __slots__ = ("loop", "thread", "then")

    def __init__(self, loop: Loop) -> None:
        super().__init__()
        self.loop = loop
        self.thread = loop.thread
        self.then: Callable[[simpy.Event | None], None] | None = None  # run when its next step starts

    def acquire(self) -> simpy.Event | None:
        event = self.loop.acquire(self.woke)
        if self.then is not None:
            if event is None:
                self.then(event)
            else:
                event.callbacks.append(self.then)
            self.then = None
        return event

    def release(self) -> None:
        self.loop.release()


class ThreadStrand(Strand):
    """A thread (with its process's GIL, if contended)."""

    __slots__ = ("thread",)

    def __init__(self, thread: SimThread) -> None:
        super().__init__()
        self.thread = thread

    def acquire(self) -> simpy.Event | None:
        gil = self.thread.gil
        return gil.acquire(self.thread) if gil is not None else None

    def release(self) -> None:
        gil = self.thread.gil
        if gil is not None:
            gil.release(self.thread)
