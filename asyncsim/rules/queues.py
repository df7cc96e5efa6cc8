"""Where work waits, without a clock: tickets, policy-ordered wait queues, a server in virtual time, a batcher.

The runtime side of `policies.Policy` and `services.Batching`, shared by the simulator and the real runner
(each behind its own clock and locks):

* a `Ticket` says what a policy may know about a waiter: its class, the class's priority (lower is served
  first) and fair-share weight, the expected remaining work of its task (from the model's mean durations, for
  `sjf`), and its absolute deadline (for `edf`); `Tickets` builds each task's the same way on both sides;
* a `WaitQueue` orders waiters by a policy: `push(item, ticket)` and `pop()`; ties are served in arrival
  order. `fair` is start-time fair queueing across classes: each class has a virtual clock advanced by
  1/weight per item served; the waiting class with the smallest clock goes next, and a class that was idle
  starts at the current virtual time (no banked credit). With k saturated classes of equal weight each gets
  1/k of the slots;
* a `QueueSchedule` is `concurrency` servers and a policy-ordered queue in virtual time (preemptive-resume
  priority included);
* a `BatchQueue` is a dynamic batcher's decisions (Triton's rule).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from ..policies import Policy, parse_policy
from ..scenario import Scenario
from ..services import Batching

__all__ = ["BatchQueue", "QueueSchedule", "Ticket", "Tickets", "WaitQueue", "served"]


@dataclass(frozen=True, slots=True)
class Ticket:
    """What a policy may know about one waiter (see the module docstring)."""

    cls: int = 0
    priority: int = 0
    weight: float = 1.0
    expected: float = 0.0
    deadline: float = float("inf")


_DEFAULT = Ticket()


class Tickets:
    """Each task's Ticket, built the same way by the simulator and the real runner: `tickets(i, arrival)` is
    task i's class, its class's priority, weight and expected work, and its absolute deadline (`arrival` +
    the class's deadline, in the caller's clock; inf when the class has none)."""

    __slots__ = ("task_type", "classes", "deadlines")

    def __init__(self, scenario: Scenario) -> None:
        types = scenario.workload.task_types
        self.task_type = scenario.task_type
        self.classes = [Ticket(cls=k, priority=t.priority, weight=t.weight, expected=p.expected)
                        for k, (t, p) in enumerate(zip(types, scenario.programs, strict=False))] or [_DEFAULT]
        self.deadlines = [t.deadline for t in types]

    def __call__(self, i: int, arrival: float) -> Ticket:
        t = int(self.task_type[i])
        base = self.classes[t]
        deadline = self.deadlines[t] if t < len(self.deadlines) else None
        if deadline is None:
            return base
        return Ticket(base.cls, base.priority, base.weight, base.expected, arrival + deadline)


class WaitQueue:
    """Waiters ordered by a policy; `pop()` returns the next item to serve."""

    __slots__ = ("kind", "_items", "_seq", "_classes", "_pass", "_vtime", "_heap_count")

    def __init__(self, policy: Policy | str = "fifo") -> None:
        self.kind = parse_policy(policy).kind
        self._seq = itertools.count()
        self._items: Any = deque() if self.kind in ("fifo", "lifo") else []
        self._classes: dict[int, deque[tuple[Any, Ticket]]] = {}
        self._pass: dict[int, float] = {}
        self._vtime = 0.0
        self._heap_count = 0

    def __len__(self) -> int:
        if self.kind == "fair":
            return sum(len(q) for q in self._classes.values())
        return len(self._items) if self.kind in ("fifo", "lifo") else self._heap_count

    def push(self, item: Any, ticket: Ticket = _DEFAULT, *, first: bool = False) -> None:
        """Queue `item`; `first` puts it ahead of the waiters it ties with (a preempted request keeps its place)."""
        kind = self.kind
        if first and kind == "fifo":
            self._items.appendleft((item, ticket))
        elif kind in ("fifo", "lifo"):
            self._items.append((item, ticket))
        elif kind == "fair":
            queue = self._classes.get(ticket.cls)
            if queue is None:
                queue = self._classes[ticket.cls] = deque()
            if not queue:
                self._pass[ticket.cls] = max(self._pass.get(ticket.cls, 0.0), self._vtime)
            if first:
                queue.appendleft((item, ticket))
            else:
                queue.append((item, ticket))
        else:
            key = ticket.priority if kind == "priority" else ticket.expected if kind == "sjf" else ticket.deadline
            heapq.heappush(self._items, (key, -next(self._seq) if first else next(self._seq), item, ticket))
            self._heap_count += 1

    def pop(self) -> Any:
        """The next item to serve (IndexError when empty)."""
        kind = self.kind
        if kind == "fifo":
            return self._items.popleft()[0]
        if kind == "lifo":
            return self._items.pop()[0]
        if kind == "fair":
            ready = [c for c, q in self._classes.items() if q]
            if not ready:
                raise IndexError("pop from an empty WaitQueue")
            cls = min(ready, key=lambda c: (self._pass[c], c))
            item, ticket = self._classes[cls].popleft()
            self._vtime = self._pass[cls]
            self._pass[cls] += 1.0 / ticket.weight
            return item
        item = heapq.heappop(self._items)[2]
        self._heap_count -= 1
        return item

    def peek(self) -> tuple[Any, Ticket]:
        """The item `pop` would return next, and its ticket, without removing it."""
        if self.kind == "fifo":
            return self._items[0]
        if self.kind == "lifo":
            return self._items[-1]
        if self.kind == "fair":
            ready = [c for c, q in self._classes.items() if q]
            cls = min(ready, key=lambda c: (self._pass[c], c))
            return self._classes[cls][0]
        return self._items[0][2], self._items[0][3]

    def remove(self, item: Any) -> bool:
        """Withdraw a waiting item (a timeout); False when it is not waiting."""
        if self.kind in ("fifo", "lifo"):
            for k, (it, _) in enumerate(self._items):
                if it is item:
                    del self._items[k]
                    return True
            return False
        if self.kind == "fair":
            for queue in self._classes.values():
                for k, (it, _) in enumerate(queue):
                    if it is item:
                        del queue[k]
                        return True
            return False
        for k, entry in enumerate(self._items):
            if entry[2] is item:
                self._items[k] = self._items[-1]
                self._items.pop()
                heapq.heapify(self._items)
                self._heap_count -= 1
                return True
        return False


# ------------------------------------------------------------------------------ a server in virtual time


class _Job:
    __slots__ = ("id", "ticket", "remaining", "started", "slices", "end")

    def __init__(self, rid: int, ticket: Ticket, seconds: float) -> None:
        self.id = rid
        self.ticket = ticket
        self.remaining = seconds
        self.started = math.nan
        self.slices: list[tuple[float, float]] = []  # (start, end) of each stretch of service before the last
        self.end = math.inf


class QueueSchedule:
    """`concurrency` servers and a queue ordered by `policy`, in virtual time (model seconds).

    `submit(sent, seconds, ticket)` queues (or starts, or preempts for) a request; `advance(t)` makes every
    completion due by `t`; `done` holds finished requests' (first start, end); `changed` the requests whose
    state changed (started, preempted, done) since the caller last cleared it.
    """

    def __init__(self, concurrency: int, policy: Policy) -> None:
        self.capacity = concurrency
        self.preemptive = policy.preemptive
        self.queue = WaitQueue(policy)
        self.running: list[_Job] = []
        self.jobs: dict[int, _Job] = {}
        self.now = 0.0
        self.next_id = 0
        self.done: dict[int, list[tuple[float, float]]] = {}
        self.changed: set[int] = set()

    def next_event(self) -> float:
        """When the next running request completes (inf: none runs)."""
        return min((j.end for j in self.running), default=math.inf)

    def end_of(self, rid: int) -> float | None:
        """When request `rid` completes if nothing preempts it (None: it waits in the queue)."""
        job = self.jobs.get(rid)
        return None if job is None or job.end == math.inf else job.end

    def advance(self, t: float) -> None:
        """Complete every request due by model time `t` (never beyond the present: later arrivals are unknown),
        starting queued ones in policy order as slots free."""
        while self.running:
            job = min(self.running, key=lambda j: j.end)
            if job.end > t:
                break
            self.now = max(self.now, job.end)
            self.running.remove(job)
            del self.jobs[job.id]
            self.done[job.id] = [*job.slices, (job.started, job.end)]
            self.changed.add(job.id)
            if len(self.queue):
                self._start(self.queue.pop())
        self.now = max(self.now, t)

    def submit(self, sent: float, seconds: float, ticket: Ticket) -> int:
        """Queue a request sent at `sent` needing `seconds` of service; its number."""
        self.advance(sent)
        job = _Job(self.next_id, ticket, seconds)
        self.next_id += 1
        self.jobs[job.id] = job
        if len(self.running) < self.capacity:
            self._start(job)
            return job.id
        if self.preemptive:
            victim = max(self.running, key=lambda j: (j.ticket.priority, j.started))
            if ticket.priority < victim.ticket.priority:
                self.running.remove(victim)
                victim.remaining -= self.now - victim.started
                victim.slices.append((victim.started, self.now))
                victim.end = math.inf
                self.changed.add(victim.id)
                self.queue.push(victim, victim.ticket, first=True)
                self._start(job)
                return job.id
        self.queue.push(job, ticket)
        return job.id

    def _start(self, job: _Job) -> None:
        job.started = self.now
        job.end = self.now + job.remaining
        self.running.append(job)
        self.changed.add(job.id)


def served(slices: list[tuple[float, float]]) -> float | list[tuple[float, float]]:
    """What a server tells the attempt loop: when a request was served, or all its slices if it was preempted."""
    return slices[0][0] if len(slices) == 1 else slices


# ------------------------------------------------------------------------------ a dynamic batcher


class BatchQueue:
    """The dynamic batcher's decisions, without a clock: callers pass the time (simulated or real).

    `offer` queues a request (False: rejected, the queue is full); `next_batch(now)` returns the requests of a
    batch to launch now, or the time to look again, or None when there is nothing to do; `finished` frees an
    instance.
    """

    __slots__ = ("spec", "waiting", "idle")

    def __init__(self, spec: Batching) -> None:
        self.spec = spec
        self.waiting: deque[tuple[Any, float]] = deque()
        self.idle = spec.instances

    def offer(self, request: Any, now: float) -> bool:
        """Queue `request` (sent at `now`); False when the admission cap rejects it."""
        if self.spec.max_queue is not None and len(self.waiting) >= self.spec.max_queue:
            return False
        self.waiting.append((request, now))
        return True

    def next_batch(self, now: float) -> list[Any] | float | None:
        """A batch to launch now (an instance is then busy), the time to check again, or None."""
        if not self.waiting or not self.idle:
            return None
        spec = self.spec
        due = self.waiting[0][1] + spec.max_delay
        if len(self.waiting) < spec.max_batch and now < due - 1e-12:
            return due
        self.idle -= 1
        size = min(len(self.waiting), spec.max_batch)
        return [self.waiting.popleft()[0] for _ in range(size)]

    def finished(self) -> None:
        """An instance finished its batch."""
        self.idle += 1
