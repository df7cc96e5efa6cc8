"""Blocking runners: sequential (one thread), threads (a ThreadPoolExecutor) and processes
(a ProcessPoolExecutor whose workers share real semaphores for pools, and services in shared memory).

One driver of the task interpreter (`rules.task`), `drive`, serves all three; it records into whatever `add`
and `log` it is given.
With an admission policy other than FIFO, tasks reach the executor through `sched.Admission` (no more
running than there are workers, the rest waiting in policy order); a pool with a policy is a
`sched.PolicySemaphore` (threads of one process only).
"""

from __future__ import annotations

import multiprocessing
import queue
import threading
import time
from collections.abc import Callable, Generator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..errors import ModelError
from ..rules.calls import BATCH, CONNECT, LIMIT, LOCAL_CPU, SERVE, SLEEP
from ..rules.queues import Ticket
from ..rules.task import ACQUIRE, CPU_WORK, FORK, INLINE, IO_WAIT, Context, steps
from ..scenario import Node
from ..trace import K_ADMIT, K_CPU
from .cpuwork import CpuWork, burn
from .run import Run, error_text
from .sched import Admission, PolicySemaphore
from .service import RealService

__all__ = ["ProcessPool", "drive", "note_startup", "run_processes", "run_threads", "start_process_pool", "sync_steps",
           "timed_burn"]


def timed_burn(iterations: int) -> tuple[float, float, float]:
    """Executor job for offloaded CPU: (perf_counter start, end, thread CPU seconds)."""
    start, c0 = time.perf_counter(), time.thread_time()
    burn(iterations)
    return start, time.perf_counter(), time.thread_time() - c0


@dataclass
class SyncCtx:
    """What the blocking driver needs: a clock, recorders, work, the shared semaphores and services, and the
    task interpreter's view of them (`rules`).

    `pools` maps a pool to (semaphore, timeout in model seconds or None); `ticket(i)` is task i's ticket for
    the policies that order waiters (threads only).
    """

    now: Callable[[], float]
    model_time: Callable[[float], float]
    add: Callable[..., None]
    log: Callable[..., None]
    cpu: CpuWork
    scale: float
    pools: dict[str, Any]
    services: dict[str, RealService]
    pool_res: dict[str, int]
    exec_res: int
    fan_out: bool
    on_step: Callable[[int, Node], None] | None = None
    ticket: Callable[[int], Ticket] = lambda _i: Ticket()
    extra: dict[str, Any] = field(default_factory=dict)
    rules: Context = field(init=False)

    def __post_init__(self) -> None:
        self.rules = Context(clock=self.now, add=self.add, log=self.log, services=self.services,
                             pools={k: (self.pool_res[k], timeout) for k, (_, timeout) in self.pools.items()},
                             release=self._release, on_step=self.on_step)

    def _release(self, _i: int, node: Node) -> None:
        self.pools[node.name][0].release()


def sync_steps(ctx: SyncCtx, i: int, durs: list[float], nodes: tuple[Node, ...]) -> None:
    """Run task i's `nodes` on this thread, blocking (`durs` in model units; waits and CPU work are scaled)."""
    drive(ctx, i, steps(ctx.rules, i, durs, nodes))


def drive(ctx: SyncCtx, i: int, commands: Generator[Any, Any, None]) -> None:
    """Carry out task i's commands (`rules.task.steps`) on this thread: waits are `time.sleep`, CPU work is
    calibrated Python, `parallel` fans out to threads (or runs inline when not `fan_out`).

    Raises:
        StepFailedError: a step failed (the interpreter's error, passed on); or what a step hook raised.
    """
    now, scale = ctx.now, ctx.scale
    reply: Any = None
    while True:
        try:
            op, value, subject = commands.send(reply)
        except StopIteration:
            return
        reply = None
        if op in (CPU_WORK, LOCAL_CPU):
            start = now()
            cpu = ctx.cpu.run(value * scale)
            ctx.add(i, subject.id, K_CPU, ctx.exec_res, start, start, now(), cpu / scale)
        elif op == IO_WAIT:
            reply = now()
            time.sleep(value * scale)
        elif op == SLEEP:
            time.sleep(value * scale)
        elif op == SERVE:
            if subject.queue is not None:
                reply = subject.queue.serve(now, scale, value, ctx.ticket(i))
                continue
            served, answered = subject.schedule.reserve(now(), value)
            time.sleep(max(0.0, answered - now()) * scale)
            reply = served
        elif op == CONNECT:
            subject.connections.acquire()
        elif op == ACQUIRE:
            sem, timeout = ctx.pools[value]
            asked = now()
            wait = None if timeout is None else timeout * scale
            got = sem.acquire(ctx.ticket(i), wait) if isinstance(sem, PolicySemaphore) else sem.acquire(timeout=wait)
            reply = (asked, bool(got))
        elif op == FORK:
            reply = _fork(ctx, i, value) if ctx.fan_out else INLINE
        elif op == LIMIT:
            subject.limiter.acquire(value, ctx.ticket(i), now, scale)
        elif op == BATCH:
            reply = subject.batcher.serve(now, scale)
        # BLOCK and RESUME: this thread is running already


def _fork(ctx: SyncCtx, i: int, branches: list[Generator[Any, Any, None]]) -> list[BaseException | None]:
    """Run the branches on threads of their own; each one's failure (None when it finished)."""
    errors: list[BaseException | None] = [None] * len(branches)
    threads = [threading.Thread(target=_branch_main, args=(ctx, i, b, errors, k)) for k, b in enumerate(branches)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def _branch_main(ctx: SyncCtx, i: int, branch: Generator[Any, Any, None], errors: list[BaseException | None],
                 k: int) -> None:
    try:
        drive(ctx, i, branch)
    except BaseException as exc:  # handed to the parent after the join
        errors[k] = exc


def _ctx_for(run: Run, *, exec_res: int, fan_out: bool, pools: dict[str, Any],
             services: dict[str, Any]) -> SyncCtx:
    return SyncCtx(now=run.now, model_time=run.model_time, add=run.add, log=run.log_call, cpu=run.cpu,
                   scale=run.scale, pools=pools, services=services, pool_res=run.pool_res, exec_res=exec_res,
                   fan_out=fan_out, on_step=run.on_step, ticket=run.ticket)


def _run_task(run: Run, ctx: SyncCtx, admit_res: int, i: int) -> None:
    admitted = run.now()
    if admitted > run.arrival[i]:
        run.add(i, -1, K_ADMIT, admit_res, run.arrival[i], admitted, admitted)
    try:
        sync_steps(ctx, i, run.durations(i), run.steps(i))
    except Exception as exc:  # a failing task is a result, not a crash
        run.fail(i, exc)
    run.done[i] = run.now()  # not reached when interrupted: the task stays unfinished


def _dispatch(run: Run, submit: Callable[[int], Future[Any] | None]) -> None:
    """Hand tasks to `submit` at their arrival times (open) or from closed-loop user threads; wait for all."""
    sc = run.sc
    futures: list[Future[Any]] = []
    if sc.arrivals is not None:
        for i, t in enumerate(sc.arrivals.tolist()):
            run.arrive_at(i, t)
            f = submit(i)
            if f is not None:
                futures.append(f)
        for f in futures:
            f.result()
        return
    lock = threading.Lock()
    counter = [0, 0]

    def user() -> None:
        while True:
            with lock:
                think = run.think(counter)
            if think is None:
                return
            time.sleep(think * run.scale)
            with lock:
                i = run.submitted(counter)
            f = submit(i)
            if f is not None:
                f.result()

    users = [threading.Thread(target=user, daemon=True)
             for _ in range(sc.users)]
    for u in users:
        u.start()
    for u in users:
        u.join()


def _shared(run: Run, mp: Any = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pool semaphores (with their timeouts) and services, for threads (mp None) or for processes.

    Raises:
        ModelError: for processes, a pool (or service) whose waiters are ordered by a policy other than fifo.
    """
    semaphore = threading.BoundedSemaphore if mp is None else mp.BoundedSemaphore
    pools = {}
    for k, p in run.sc.workload.pools.items():
        if p.policy.kind == "fifo":
            pools[k] = (semaphore(p.capacity), p.timeout)
        elif mp is None:
            pools[k] = (PolicySemaphore(p.capacity, p.policy), p.timeout)
        else:
            raise ModelError(f"pools.{k}.policy: the real runner orders waiters by policy under asyncio, threads "
                             "and sequential, not between processes; validate it with threads:N")
    return pools, run.services(mp=mp)


def run_threads(run: Run, workers: int, *, fan_out: bool) -> None:
    """Sequential (workers=1, no fan-out: runs on this thread) or a pool of `workers` threads."""
    machine = run.sc.workload.machine
    tb = run.tb
    admit_res = tb.resource_id("workers")
    exec_res = tb.resource_id("gil") if fan_out and machine.gil else -1
    pools, services = _shared(run)
    ctx = _ctx_for(run, exec_res=exec_res, fan_out=fan_out, pools=pools, services=services)
    if run.sc.workload.policy.kind != "fifo":
        _run_admitted(run, workers, lambda i: _run_task(run, ctx, admit_res, i))
        return
    if not fan_out:
        _dispatch(run, lambda i: _run_task(run, ctx, admit_res, i))
        return
    ex = ThreadPoolExecutor(workers)
    try:
        _dispatch(run, lambda i: ex.submit(_run_task, run, ctx, admit_res, i))
    except KeyboardInterrupt:
        ex.shutdown(wait=False, cancel_futures=True)  # stop now: queued tasks never start
        raise
    ex.shutdown(wait=True)


def _run_admitted(run: Run, workers: int, task: Callable[[int], None]) -> None:
    """Run tasks on `workers` threads, admitted in the workload's policy order (`sched.Admission`)."""
    ex = ThreadPoolExecutor(workers)
    done: dict[int, Future[None]] = {}

    def job(i: int) -> None:
        try:
            task(i)
        finally:
            admission.finished()  # the freed worker goes to the next task by policy, as in the simulator
            done[i].set_result(None)

    admission = Admission(workers, run.sc.workload.policy, lambda i: ex.submit(job, i))

    def submit(i: int) -> Future[Any]:
        done[i] = Future()
        admission.arrive(i, run.ticket(i))
        return done[i]

    try:
        _dispatch(run, submit)
    except KeyboardInterrupt:
        ex.shutdown(wait=False, cancel_futures=True)
        raise
    ex.shutdown(wait=True)


# ----------------------------------------------------------------------------------------- processes

_WORKER: dict[str, Any] = {}


def _init_worker(rate: float, scale: float, t0: Any, pools: dict[str, Any], services: dict[str, Any],
                 pool_res: dict[str, int], exec_res: int, fan_out: bool,
                 on_step: Callable[[int, Node], None] | None) -> None:
    records: list[tuple[Any, ...]] = []
    calls: list[tuple[Any, ...]] = []
    _WORKER["records"], _WORKER["calls"] = records, calls
    _WORKER["ctx"] = SyncCtx(now=lambda: (time.perf_counter() - t0.value) / scale,
                             model_time=lambda perf: (perf - t0.value) / scale,
                             add=lambda *r: records.append(r), log=lambda *r: calls.append(r), cpu=CpuWork(rate),
                             scale=scale, pools=pools, services=services, pool_res=pool_res, exec_res=exec_res,
                             fan_out=fan_out, on_step=on_step)


def _process_task(i: int, durs: list[float],
                  nodes: tuple[Node, ...]) -> tuple[float, float, list[Any], list[Any], str | None]:
    """Run one task in a worker process: (admitted, done, records, call rows, error), times in model seconds."""
    ctx: SyncCtx = _WORKER["ctx"]
    records: list[tuple[Any, ...]] = _WORKER["records"]
    calls: list[tuple[Any, ...]] = _WORKER["calls"]
    records.clear()
    calls.clear()
    admitted = ctx.now()
    error = None
    try:
        sync_steps(ctx, i, durs, nodes)
    except Exception as exc:  # a failing task is a result, not a crash
        error = error_text(exc)
    return admitted, ctx.now(), list(records), list(calls), error


def _mp_context() -> Any:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


class ProcessPool(ProcessPoolExecutor):
    """A ProcessPoolExecutor that notes its first submit and when each worker was ready, for its start-up."""

    def __init__(self, workers: int, initializer: Any = None, initargs: tuple[Any, ...] = ()) -> None:
        mp = _mp_context()
        self.ready = mp.Array("d", workers, lock=False)  # perf_counter when each worker was ready (0: not yet)
        self.count = mp.Value("i", 0)
        self.first_submit: float | None = None
        super().__init__(workers, mp_context=mp, initializer=_ready,
                         initargs=(self.ready, self.count, initializer, initargs))

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        if self.first_submit is None:  # this call forks the workers (ProcessPoolExecutor._launch_processes)
            self.first_submit = time.perf_counter()
        return super().submit(fn, *args, **kwargs)

    def startup(self) -> float | None:
        """Real seconds from the first submit to the last worker ready (None before any submit)."""
        ready = [t for t in self.ready if t > 0]
        return max(ready) - self.first_submit if self.first_submit is not None and ready else None


def _ready(ready: Any, count: Any, initializer: Any, initargs: tuple[Any, ...]) -> None:
    """A worker's initializer: the pool's own, then note that this worker is ready."""
    if initializer is not None:
        initializer(*initargs)
    with count.get_lock():
        k = count.value
        count.value += 1
    ready[k] = time.perf_counter()


def start_process_pool(run: Run, workers: int, initializer: Any = None, initargs: tuple[Any, ...] = (),
                       t0: Any = None) -> ProcessPool:
    """A process pool, as a user's program makes one: its workers start at the first submit (forked one after
    another by the submitting thread), inside the measurement, as in the user's wall clock. The run's clock
    starts now (and `t0`, if shared with the workers)."""
    run.t0 = run.clock()
    if t0 is not None:
        t0.value = run.t0
    return ProcessPool(workers, initializer, initargs)


def note_startup(run: Run, pool: ProcessPool) -> None:
    """Record the pool's start-up in the run (model seconds)."""
    startup = pool.startup()
    run.pool_startup = None if startup is None else startup / run.scale


def run_processes(run: Run, workers: int) -> None:
    """A pool of `workers` processes; pools and services are semaphores shared between processes."""
    mp = _mp_context()
    machine = run.sc.workload.machine
    admit_res = run.tb.resource_id("workers")
    exec_res = run.tb.resource_id("cores") if workers > machine.cores else -1
    pools, services = _shared(run, mp)
    t0 = mp.Value("d", 0.0, lock=False)
    fan_out = any(p.has_parallel for p in run.sc.programs)
    ex = start_process_pool(run, workers, _init_worker, (run.cpu.rate, run.scale, t0, pools, services,
                                                         run.pool_res, exec_res, fan_out, run.on_step), t0)

    def submit(i: int) -> Future[Any]:
        f = ex.submit(_process_task, i, run.durations(i), run.steps(i))
        f.add_done_callback(partial(_collect, run, admit_res, i))
        return f

    try:
        if run.sc.workload.policy.kind == "fifo":
            _dispatch(run, submit)
        else:
            _dispatch_admitted(run, workers, submit)
    finally:
        note_startup(run, ex)
        ex.shutdown(wait=True, cancel_futures=True)


def _dispatch_admitted(run: Run, workers: int, submit: Callable[[int], Future[Any]]) -> None:
    """Hand tasks to a process pool in the workload's policy order: the parent keeps the queue (no more
    tasks in the pool than workers) and a feeder thread submits each admitted task.

    The feeder submits rather than the pool's completion callback, which runs on the pool's management
    thread (submitting from there can block on its own wake-up pipe)."""
    feed: queue.SimpleQueue[int | None] = queue.SimpleQueue()
    done: dict[int, Future[None]] = {}
    admission = Admission(workers, run.sc.workload.policy, feed.put)

    def ended_future(i: int, _future: Future[Any]) -> None:
        admission.finished()
        done[i].set_result(None)

    def feeder() -> None:
        while (i := feed.get()) is not None:
            submit(i).add_done_callback(partial(ended_future, i))

    def arrive(i: int) -> Future[Any]:
        done[i] = Future()
        admission.arrive(i, run.ticket(i))
        return done[i]

    thread = threading.Thread(target=feeder, daemon=True)
    thread.start()
    try:
        _dispatch(run, arrive)
    finally:
        feed.put(None)
        thread.join()


def _collect(run: Run, admit_res: int, i: int, fut: Future[Any]) -> None:
    if fut.cancelled():
        return
    exc = fut.exception()
    if exc is not None:
        run.fail(i, exc)
        return
    admitted, done, records, calls, error = fut.result()
    if admitted > run.arrival[i]:
        run.add(i, -1, K_ADMIT, admit_res, run.arrival[i], admitted, admitted)
    for r in records:
        run.add(*r)
    for c in calls:
        run.log_call(*c)
    if error is not None:
        run.failed[i] = True
        run.errors[i] = error
    run.done[i] = done
