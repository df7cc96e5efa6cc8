"""The task interpreter (rules/task.py) driven by hand: the commands it yields, the records it makes, and its
rules for pool slots, timeouts, branches and calls — what every executor carries out."""

from __future__ import annotations

import pytest

import asyncsim as a
from asyncsim.rules.calls import SERVE, SLEEP, UNLOCKED, StepFailedError
from asyncsim.rules.limits import CallState, buckets
from asyncsim.rules.task import ACQUIRE, BLOCK, CPU_WORK, FORK, INLINE, IO_WAIT, RESUME, Context, steps
from asyncsim.services import SERVER_ERROR, Failures, Retry
from asyncsim.trace import K_CALL, K_IO, K_USE


class _Endpoint:
    def __init__(self, name: str, spec: a.Service) -> None:
        self.name, self.spec, self.res, self.limiter_res, self.backoff_res = name, spec, 7, 8, 9
        self.server, self.client, self.lock = buckets(spec.rate_limit), buckets(spec.client_limit), UNLOCKED
        self.state = CallState()


class _Executor:
    """A hand-cranked executor: a clock advanced by the waits, and what the interpreter recorded and released."""

    def __init__(self, workload: a.Workload, *, pool_ok: bool = True, fork: object = "run") -> None:
        self.now, self.records, self.calls, self.released, self.hooked = 0.0, [], [], [], []
        self.pool_ok, self.fork = pool_ok, fork
        self.ctx = Context(clock=lambda: self.now, add=lambda *r: self.records.append(r),
                           log=lambda *r: self.calls.append(r),
                           services={k: _Endpoint(k, s) for k, s in workload.services.items()},
                           pools={k: (5, p.timeout) for k, p in workload.pools.items()},
                           release=lambda i, node: self.released.append((i, node.name)),
                           on_step=lambda i, node: self.hooked.append(node.path))

    def run(self, gen) -> list[tuple[int, object]]:
        """Carry out every command (forked branches one after another); the (code, value) of each."""
        done, reply = [], None
        while True:
            try:
                op, value, _ = gen.send(reply)
            except StopIteration:
                return done
            done.append((op, value if op != FORK else len(value)))
            reply = None
            if op in (CPU_WORK, SLEEP, SERVE):
                reply = self.now if op == SERVE else None
                self.now += value
            elif op == IO_WAIT:
                reply = self.now
                self.now += value
            elif op == ACQUIRE:
                reply = (self.now, self.pool_ok)
                self.now += 0.5  # waited half a second for the slot (or until the timeout)
            elif op == FORK:
                if self.fork == "inline":
                    reply = INLINE
                else:
                    failures = []
                    for branch in value:
                        try:
                            done += self.run(branch)
                            failures.append(None)
                        except StepFailedError as exc:
                            failures.append(exc)
                    reply = failures


def _task(workload: a.Workload, executor: _Executor):
    sc = a.build_scenario(workload, seed=0)
    return steps(executor.ctx, 0, sc.task_durations(0).tolist(), sc.programs[0].steps)


def test_leaf_steps_become_commands_and_records():
    w = a.Workload(arrivals=a.Batch(count=1), task=(a.cpu(0.25), a.io(1.0), a.call("api")),
                   services={"api": a.Service(latency=2.0)})
    ex = _Executor(w)
    assert ex.run(_task(w, ex)) == [(CPU_WORK, 0.25), (IO_WAIT, 1.0), (BLOCK, 0), (SERVE, 2.0)]
    # the interpreter records the io wait (from when it began) and the call; the executor records cpu steps
    assert [(r[2], r[4], r[5], r[6]) for r in ex.records] == [(K_IO, 0.25, 0.25, 1.25), (K_CALL, 1.25, 1.25, 3.25)]
    assert [(c[3], c[4], c[5], c[6]) for c in ex.calls] == [(0, 0, 1.25, 3.25)]  # attempt 0, OK, sent, end
    assert ex.hooked == ["task[0]", "task[1]", "task[2]"]  # the hook runs before each leaf step


def test_a_call_that_can_fail_goes_through_its_attempts():
    spec = a.Service(latency=0.5, failures=Failures(server_error=1.0), retry=Retry(max_retries=1))
    w = a.Workload(arrivals=a.Batch(count=1), task=(a.call("api"),), services={"api": spec})
    ex = _Executor(w)
    with pytest.raises(StepFailedError, match="api: server_error after 2 attempts"):
        ex.run(_task(w, ex))
    assert [(c[3], c[4]) for c in ex.calls] == [(0, SERVER_ERROR), (1, SERVER_ERROR)]  # attempt, outcome
    assert ex.calls[1][5] > ex.calls[0][6]  # the retry was sent after a back-off from the first answer


def test_a_pool_slot_is_held_around_its_body_and_given_back_when_the_body_fails():
    spec = a.Service(latency=0.1, failures=Failures(server_error=1.0), retry=Retry(policy="none"))
    w = a.Workload(arrivals=a.Batch(count=1), task=(a.use("db", [a.io(1.0), a.call("api")]),),
                   pools={"db": a.Pool(capacity=1)}, services={"api": spec})
    ex = _Executor(w)
    with pytest.raises(StepFailedError, match="api: server_error"):
        ex.run(_task(w, ex))
    assert ex.released == [(0, "db")]
    use = [r for r in ex.records if r[2] == K_USE]
    assert [(r[3], r[4], r[5], r[6]) for r in use] == [(5, 0.0, 0.5, 1.6)]  # asked, got the slot, gave it back


def test_a_body_that_ends_resumes_the_task_before_the_slot_is_given_back():
    w = a.Workload(arrivals=a.Batch(count=1), task=(a.use("db", [a.io(1.0)]),), pools={"db": a.Pool(capacity=1)})
    ex = _Executor(w)
    assert ex.run(_task(w, ex)) == [(ACQUIRE, "db"), (IO_WAIT, 1.0), (RESUME, 0)]
    assert ex.released == [(0, "db")]


def test_a_pool_timeout_fails_the_task_with_httpx_wording():
    w = a.Workload(arrivals=a.Batch(count=1), task=(a.use("db", [a.io(1.0)]),),
                   pools={"db": a.Pool(capacity=1, timeout=0.5)})
    ex = _Executor(w, pool_ok=False)
    with pytest.raises(StepFailedError, match=r"^PoolTimeout: no slot of pool 'db' within 0.5s$"):
        ex.run(_task(w, ex))
    assert ex.released == []  # never held
    assert [(r[2], r[4], r[5], r[6]) for r in ex.records] == [(K_USE, 0.0, 0.5, 0.5)]


def _fan_out(failing: bool) -> a.Workload:
    spec = a.Service(latency=0.1, failures=Failures(server_error=1.0 if failing else 0.0),
                     retry=Retry(policy="none"))
    return a.Workload(arrivals=a.Batch(count=1), task=(a.parallel([a.io(1.0)], [a.call("api")], [a.io(2.0)]),
                                                       a.io(3.0)), services={"api": spec})


def test_branches_all_finish_then_the_first_failure_is_raised():
    ex = _Executor(_fan_out(failing=True))
    with pytest.raises(StepFailedError, match="api: server_error"):
        ex.run(_task(_fan_out(failing=True), ex))
    # every branch ran to its end (the third one too) before the failure was raised; the io after never ran
    assert [r[6] for r in ex.records if r[2] == K_IO] == [1.0, 3.1]


def test_branches_the_executor_declines_run_inline_in_order():
    w = _fan_out(failing=False)
    ex = _Executor(w, fork="inline")
    assert ex.run(_task(w, ex)) == [(FORK, 3), (IO_WAIT, 1.0), (BLOCK, 0), (SERVE, 0.1), (IO_WAIT, 2.0),
                                    (IO_WAIT, 3.0)]
