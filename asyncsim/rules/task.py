"""A task's steps, interpreted once: a generator of commands that every executor carries out on its own clock.

`steps(ctx, task, durs, nodes)` walks a compiled program (`scenario.Node`s) and decides everything a step
means — the order of steps, a pool slot held around its body and given back whatever happens, a pool
timeout's failure, branches that all finish before the first failure is raised, a call's attempts (the
attempt loop of `rules.calls`), and the trace records of io waits, calls and pool slots. Where the
executor must act, it yields a command and the executor (the SimPy engine, the asyncio runner, the blocking
runner) sends back what happened:

| command                        | the executor                                                | sends back        |
| ------------------------------ | ----------------------------------------------------------- | ----------------- |
| (CPU_WORK, seconds, node)      | runs that much Python on the task's thread, records the step | None              |
| (BLOCK, 0, node)               | runs the task's code that issues a blocking io or call      | None              |
| (IO_WAIT, seconds, node)       | runs the task's code that issues an io, then waits           | when it began     |
| (ACQUIRE, pool, node)          | waits for a slot of `pool` (up to its timeout)              | (asked, got it?)  |
| (RESUME, 0, node)              | runs the task's code again after a pool's body              | None              |
| (FORK, branches, node)         | runs the branch generators concurrently, or declines        | failures, INLINE  |
| SLEEP, SERVE, BATCH, LIMIT     | as `rules.calls` (their subject is the service)             | as there          |

FORK's answer is each branch's failure (None for one that finished), in order, or INLINE when the branches
run one after another on the task's own thread (sequential), which `steps` then does itself.
A call is a BLOCK then its attempts; an io step is one IO_WAIT (a BLOCK then a SLEEP, in one command: the
commonest step). The executor knows its own
threads (a SimPy engine: who holds the loop or the GIL; a real run: the thread it is on), so it alone
records cpu steps and waits to run. A failing step raises `StepFailedError`; the executor decides what a
failed task is.

Every command is a tuple (code, value, subject): the subject is the step's node, or the service a call
command concerns.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..scenario import CALL, CPU, IO, PAR, USE, Node
from ..services import Service
from ..trace import K_CALL, K_IO, K_USE
from .calls import SERVE, Endpoint, StepFailedError, attempts

__all__ = ["ACQUIRE", "BLOCK", "CPU_WORK", "IO_WAIT", "Context", "FORK", "INLINE", "RESUME", "no_calls", "plain_call",
           "pool_timeout", "steps"]

# the commands of the module docstring (the call commands keep the codes `rules.calls` gives them)
CPU_WORK, IO_WAIT, BLOCK, ACQUIRE, RESUME, FORK = range(4, 10)
INLINE = object()
"""An executor's answer to FORK when branches run one after another on the task's own thread (sequential)."""

Command = tuple[int, Any, Any]  # (code, value, subject)


@dataclass(frozen=True, slots=True, eq=False)
class Context:
    """What `steps` needs of its executor (none of it blocks): the clock (model seconds), the trace and call-log
    recorders, the services, each pool's trace code and timeout (model seconds), how to give a pool slot back,
    and a hook run before each leaf step (None: none)."""

    clock: Callable[[], float]
    add: Callable[..., None]
    log: Callable[..., None]
    services: Mapping[str, Endpoint]
    pools: Mapping[str, tuple[int, float | None]]
    release: Callable[[int, Node], None]
    on_step: Callable[[int, Node], None] | None = None


def no_calls(*_row: Any) -> None:
    """The call log of a model without services (the interpreter never logs a call there)."""


def pool_timeout(pool: str, timeout: float) -> str:
    """The error of a task that got no slot of `pool` in time (httpx's PoolTimeout)."""
    return f"PoolTimeout: no slot of pool {pool!r} within {timeout:g}s"


def steps(ctx: Context, task: int, durs: Sequence[float], nodes: tuple[Node, ...],
          size: int = 1) -> Generator[Command, Any, None]:
    """The commands of `task`'s `nodes` (draws `durs`, model units); `size` items ride on each call (a batch).

    Raises:
        StepFailedError: a step failed as the model allows (a call out of attempts, a pool timeout).
    """
    clock, add, on_step = ctx.clock, ctx.add, ctx.on_step
    for node in nodes:
        kind = node.kind
        if kind == CPU:
            if on_step is not None:
                on_step(task, node)
            yield CPU_WORK, durs[node.id], node
        elif kind == IO:
            if on_step is not None:
                on_step(task, node)
            start = yield IO_WAIT, durs[node.id], node
            add(task, node.id, K_IO, -1, start, start, clock())
        elif kind == CALL:
            if on_step is not None:
                on_step(task, node)
            yield BLOCK, 0, node
            yield from call(ctx, task, node, durs, size)
        elif kind == USE:
            name = node.name
            res, timeout = ctx.pools[name]
            asked, got = yield ACQUIRE, name, node
            if not got:
                now = clock()
                add(task, node.id, K_USE, res, asked, now, now)
                assert timeout is not None  # only a pool with a timeout gives up waiting
                raise StepFailedError(pool_timeout(name, timeout))
            held = clock()
            try:
                yield from steps(ctx, task, durs, node.body, size)
                yield RESUME, 0, node
            finally:
                ctx.release(task, node)
                add(task, node.id, K_USE, res, asked, held, clock())
        else:
            assert kind == PAR
            branches = [steps(ctx, task, durs, branch, size) for branch in node.branches]
            failures = yield FORK, branches, node
            if failures is INLINE:
                for branch in branches:
                    yield from branch
                continue
            # as asyncio.gather(return_exceptions=True): every branch has finished; the first failure is raised
            failure = next((f for f in failures if f is not None), None)
            if failure is not None:
                raise failure


def plain_call(node: Node, spec: Service) -> bool:
    """Whether a call to `spec` is one attempt that cannot fail: no client limiter, client CPU, connection pool or
    connecting, no preemption (one SERVE, which `call` makes without the attempt loop)."""
    return (node.col < 0 and spec.client_limit is None and not spec.policy.preemptive and spec.client_cpu is None
            and spec.connections is None and not spec.connect)


def call(ctx: Context, task: int, node: Node, durs: Sequence[float], size: int) -> Generator[Any, Any, None]:
    """One call's commands: its attempts (`rules.calls.attempts`), or for a plain call — one attempt that cannot
    fail, no client limiter, client CPU, connection pool or connecting, no preemption — the single SERVE those attempts
    would make, without their generator (the commonest call, a quarter of a call-bound simulation's time)."""
    svc = ctx.services[node.name]
    if plain_call(node, svc.spec):
        sent = ctx.clock()
        served = yield SERVE, durs[node.id] + svc.spec.per_item * size, svc
        end = ctx.clock()
        ctx.add(task, node.id, K_CALL, svc.res, sent, served, end)
        ctx.log(task, node.id, svc.res, 0, 0, sent, end, 0.0, 0.0, size)
        return
    yield from attempts(svc, task, node.id, node.col, durs, size, clock=ctx.clock, add=ctx.add, log=ctx.log,
                        lock=svc.lock)
