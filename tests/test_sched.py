"""The real runner's policy primitives (asyncsim.real.sched), without timing: who gets a freed slot next."""

from __future__ import annotations

import asyncio
import threading

from asyncsim.real.sched import Admission, AsyncPolicySemaphore, PolicySemaphore
from asyncsim.rules.queues import Ticket

URGENT, NORMAL, LOW = Ticket(priority=0), Ticket(priority=1), Ticket(priority=2)


def test_admission_starts_at_once_while_free_then_in_policy_order():
    started: list[int] = []
    admission = Admission(2, "priority", started.append)
    for i, ticket in enumerate([LOW, LOW, LOW, NORMAL, URGENT]):
        admission.arrive(i, ticket)
    assert started == [0, 1]  # two free slots go to the first arrivals, whatever their priority
    for _ in range(3):
        admission.finished()
    assert started == [0, 1, 4, 3, 2]
    admission.finished()
    admission.finished()
    admission.arrive(5, LOW)  # a slot was free again
    assert started[-1] == 5


def test_async_semaphore_hands_a_freed_slot_to_the_waiter_its_policy_picks():
    async def main() -> list[str]:
        sem = AsyncPolicySemaphore(1, "priority")
        order: list[str] = []
        await sem.acquire(LOW)

        async def waiter(name: str, ticket: Ticket) -> None:
            await sem.acquire(ticket)
            order.append(name)
            sem.release()

        tasks = [asyncio.create_task(waiter(n, t)) for n, t in (("low", LOW), ("normal", NORMAL), ("urgent", URGENT))]
        await asyncio.sleep(0)  # every waiter queues
        assert sem.locked()
        sem.release()
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(main()) == ["urgent", "normal", "low"]


def test_a_cancelled_async_waiter_leaves_the_queue_and_does_not_lose_a_slot():
    async def main() -> bool:
        sem = AsyncPolicySemaphore(1, "lifo")
        await sem.acquire()
        waiting = asyncio.create_task(sem.acquire())
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.gather(waiting, return_exceptions=True)
        sem.release()
        await asyncio.wait_for(sem.acquire(), 1.0)  # the slot came back to the semaphore
        return True

    assert asyncio.run(main())


def test_thread_semaphore_orders_blocked_threads_by_policy():
    sem = PolicySemaphore(1, "priority")
    assert sem.acquire(LOW)
    order: list[str] = []
    queued = threading.Barrier(4)
    threads = []
    for name, ticket in (("low", LOW), ("normal", NORMAL), ("urgent", URGENT)):
        def run(name: str = name, ticket: Ticket = ticket) -> None:
            queued.wait()
            sem.acquire(ticket)
            order.append(name)
            sem.release()
        threads.append(threading.Thread(target=run))
    for t in threads:
        t.start()
    queued.wait()
    while len(sem._queue) < 3:  # wait until all three block (no timing assumption)
        threading.Event().wait(0.001)
    sem.release()
    for t in threads:
        t.join(5)
    assert order == ["urgent", "normal", "low"]
    assert sem.acquire(LOW, timeout=0.0)  # every thread gave its slot back
    assert not sem.acquire(LOW, timeout=0.01)  # held: a timed-out waiter gives up and leaves the queue
    assert len(sem._queue) == 0
