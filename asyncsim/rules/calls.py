"""One call and its attempts, written once: a generator that the simulator and the real runners drive.

`attempts(...)` runs the rules of `services` in order — client limiter, server rate limit at send time,
the drawn outcome, the service time (cut to the timeout), back-off — reading the time from the `clock` it is
given (model seconds) and recording through `add` (trace) and `log` (call log). Where time must pass it
yields a command for its driver, which waits with its own clock and sleep (a SimPy timeout, `asyncio.sleep`,
`time.sleep`) and sends back what the wait produced:

| command          | the driver                                                  | sends back             |
| ---------------- | ----------------------------------------------------------- | ---------------------- |
| (SLEEP, s, svc)  | waits s model seconds (a limiter wait or a back-off)        | None                   |
| (SERVE, s, svc)  | takes a slot of `svc`'s server and holds it s model seconds | when it was served (*) |
| (BATCH, 0, svc)  | queues the request at `svc`'s batcher until its batch ends  | (start, size) or None  |
| (LIMIT, c, svc)  | waits its turn for charges c at `svc`'s policy limiter      | None                   |
| (LOCAL_CPU, s, ref) | runs s model seconds of the client's CPU on the task's thread (never offloaded) | None |
| (CONNECT, 0, svc) | waits for a connection of `svc.connections` (the client's pool); `attempts` gives it back | None |

An attempt that must open a connection (`connect`: none that is open is idle) sleeps `connect` after CONNECT,
before the server sees it (counted as the call's queueing).

BATCH's answer is the batch's start and size, or None when the batcher rejected the request; LIMIT is used
for a client limiter that dispatches (a policy other than FIFO, or an `interval`: `rules.limits.PolicyLimiter`);
LOCAL_CPU's subject is a `StepRef` (its cpu record belongs to the call's step).
(*) or, for a request preempted by a higher priority, its service slices [(start, end), ...]: the gaps
between them are recorded as queueing again. A call out of attempts raises `StepFailedError`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

from ..services import (
    ATTEMPT_FIELDS,
    CALL_HEAD,
    OK,
    OUTCOMES,
    RATE_LIMITED,
    REJECTED,
    SERVER_ERROR,
    TIMEOUT,
    Failures,
    RateLimit,
    Retry,
    Service,
)
from ..trace import K_CALL, K_THROTTLE
from .limits import Buckets, CallState

__all__ = ["BATCH", "CONNECT", "LIMIT", "LOCAL_CPU", "SERVE", "SLEEP", "UNLOCKED", "Endpoint", "StepFailedError",
           "StepRef", "accepted", "attempt_outcome", "attempts", "backoff_s", "charged_tokens"]

SLEEP, SERVE, BATCH, LIMIT = range(4)
LOCAL_CPU, CONNECT = 10, 11  # after rules.task's commands (4..9)


class StepRef:
    """The subject of a LOCAL_CPU command: the step whose cpu record it is (`id`, as a node has)."""

    __slots__ = ("id",)

    def __init__(self, step: int) -> None:
        self.id = step


class StepFailedError(Exception):
    """A step failed as the model says it can (a call out of attempts, a pool timeout); the message says how."""


class Endpoint(Protocol):
    """What the attempt loop needs of a service: its spec, trace codes and rate-limit buckets."""

    name: str
    spec: Service
    res: int
    limiter_res: int
    backoff_res: int
    server: Buckets | None
    client: Buckets | None
    state: CallState  # requests in flight at the server, the client's pause after a 429
    connections: Any  # the client's connection pool (None without one): its driver waits for CONNECT, we release
    lock: AbstractContextManager[Any]  # guards the buckets and the state when threads or processes share them


def charged_tokens(service: Service, limit: RateLimit, tokens_in: Any, tokens_out: Any) -> Any:
    """Tokens a request is charged against `limit` (max_tokens reserved when the provider counts it); the
    token counts are numbers, or arrays of them (one per task: `bounds`)."""
    if limit.count_max_tokens:
        assert service.tokens is not None
        assert service.tokens.max_tokens is not None
        return tokens_in + service.tokens.max_tokens
    return tokens_in + tokens_out


def attempt_outcome(failures: Failures, u: float) -> int:
    """OK, RATE_LIMITED, SERVER_ERROR or TIMEOUT, from a uniform draw `u` in [0, 1)."""
    if u < failures.rate_limited:
        return RATE_LIMITED
    if u < failures.rate_limited + failures.server_error:
        return SERVER_ERROR
    if u < failures.rate_limited + failures.server_error + failures.timeout:
        return TIMEOUT
    return OK


def accepted(outcome: Any) -> Any:
    """Which attempts (outcome codes, one or an array) the server accepted, so spent quota and tokens: an OK, or
    a 5xx or timeout after acceptance; a 429 or a rejected request spent nothing."""
    return (outcome == OK) | (outcome == SERVER_ERROR) | (outcome == TIMEOUT)


def backoff_s(retry: Retry, n: int, u: float, retry_after: float | None = None) -> float | None:
    """Seconds to wait before retry `n` (0 for the first), from a jitter uniform `u` in [0, 1); None when the
    client gives up (a retry-after above its window, with `beyond_window: give_up`)."""
    added = retry.added_jitter * u
    if retry.retry_after_whole and retry_after is not None and retry_after != int(retry_after):
        retry_after = None  # litellm's int() parse fails on "1.5": it backs off instead
    if retry_after is not None and retry.honor_retry_after:
        lo, hi = retry.retry_after_window
        if lo < retry_after <= hi:
            return retry_after + added
        if retry_after > hi and retry.beyond_window == "give_up":
            return None
    ceiling = min(retry.initial * retry.multiplier**n, retry.max_delay)
    if retry.policy == "full_jitter":
        low = retry.min_delay
        return low + u * max(0.0, ceiling - low) + added
    return ceiling * (1 - retry.jitter * u) + added


def admit(spec: Service, server: Buckets | None, state: CallState, now: float, tokens_in: float,
          tokens_out: float) -> tuple[int, float | None, bool]:
    """The server's side of an attempt sent at `now`, shared by the simulator, the real runners and `serve`:
    (RATE_LIMITED, the retry-after its `server.retry_after` mode sends, False) when the rate limit or the cap
    on requests in flight refuses it, else (OK, None, entered) with its quota taken; `entered`: it counts
    against `server.concurrent_limit` until `state.leave()`. The caller holds the lock guarding them."""
    short = 0.0
    charges = (1.0, 0.0)
    limit = spec.rate_limit
    if server is not None and limit is not None:
        charges = _charges(spec, limit, tokens_in, tokens_out)
        short = max((b.shortfall_s(now, a) for b, a in zip(server, charges, strict=True) if b is not None and a),
                    default=0.0)
    if short > 0:
        return RATE_LIMITED, spec.server.rate_limited_header(short), False
    cap = spec.server.concurrent_limit
    if cap is not None and state.full(cap):
        return RATE_LIMITED, spec.server.over_cap_header(), False
    if server is not None and limit is not None:
        for bucket, amount in zip(server, charges, strict=True):
            if bucket is not None and amount:
                bucket.take(now, amount)
    if cap is not None:
        state.enter()
    return OK, None, cap is not None


def _charges(spec: Service, limit: RateLimit, tokens_in: float, tokens_out: float) -> tuple[float, float]:
    """(requests, tokens) one attempt takes from `limit`'s buckets."""
    tokens = charged_tokens(spec, limit, tokens_in, tokens_out) if limit.tpm is not None else 0.0
    return 1.0, tokens


def _pause(svc: Endpoint, task: int, step: int, clock: Callable[[], float], add: Callable[..., None],
           lock: AbstractContextManager[Any]) -> Generator[tuple[int, Any, Endpoint], Any, None]:
    """Wait out the client's pause after its last 429 (`retry.cooldown`), recorded as backing off."""
    with lock:
        asked, until = clock(), svc.state.paused_until
    if until > asked:
        yield SLEEP, until - asked, svc
        now = clock()
        add(task, step, K_THROTTLE, svc.backoff_res, asked, now, now)


UNLOCKED: AbstractContextManager[Any] = nullcontext()
"""The lock of an endpoint that one thread uses alone."""


def attempts(svc: Endpoint, task: int, step: int, col: int, durs: Sequence[float], size: int, *,
             clock: Callable[[], float], add: Callable[..., None], log: Callable[..., None],
             lock: AbstractContextManager[Any] = UNLOCKED) -> Generator[tuple[int, Any, Any], Any, None]:
    """The attempts of one call of `task`'s step `step` (draws from column `col`, or durs[step] when col < 0).

    `size` is the number of items the request carries; `lock` guards the buckets when threads or processes
    share them. Yields the commands of the module docstring.

    Raises:
        StepFailedError: the call failed and may not be retried (out of attempts, or not retryable).
    """
    spec = svc.spec
    cooldown = spec.retry.cooldown
    client_cpu = spec.client_cpu
    here = StepRef(step) if client_cpu is not None else None
    tokens_in, tokens_out = (durs[col], durs[col + 1]) if col >= 0 else (0.0, 0.0)
    for attempt in range(spec.attempts):
        if col >= 0:
            at = col + CALL_HEAD + ATTEMPT_FIELDS * attempt
            latency, u_fail, u_jitter = durs[at], durs[at + 1], durs[at + 2]
        else:
            latency, u_fail, u_jitter = durs[step], 1.0, 0.0
        client = spec.client_limit
        if client is not None and attempt and client.per == "call":
            client = None  # taken once, around the client's own retries
        dispatched = client is not None and client.dispatches  # the dispatcher itself holds back during a pause
        if cooldown and not dispatched:  # the client takes no limiter capacity while it pauses after a 429
            yield from _pause(svc, task, step, clock, add, lock)
        if svc.client is not None and client is not None and dispatched:
            charges = _charges(spec, client, tokens_in, tokens_out)
            asked = clock()
            yield LIMIT, charges, svc
            now = clock()
            if now > asked:
                add(task, step, K_THROTTLE, svc.limiter_res, asked, now, now)
        elif svc.client is not None and client is not None:
            charges = _charges(spec, client, tokens_in, tokens_out)
            wait = 0.0
            with lock:
                asked = clock()
                for bucket, amount in zip(svc.client, charges, strict=True):
                    if bucket is not None and amount:
                        wait = max(wait, bucket.reserve(asked, amount))
            if wait > 0:
                yield SLEEP, wait, svc
                now = clock()
                add(task, step, K_THROTTLE, svc.limiter_res, asked, now, now)
        if cooldown and not dispatched:  # a pause that began while it waited for the limiter holds it too
            yield from _pause(svc, task, step, clock, add, lock)
        if client_cpu is not None and client_cpu.before:  # building the request: the client's CPU
            yield LOCAL_CPU, client_cpu.before, here
        batch = size
        sent = clock()
        if spec.connections is not None:  # the client's pool: a connection for this attempt (its wait is queueing)
            yield CONNECT, 0, svc
        if spec.connect:  # opening a new connection (none open is idle) takes `connect` before the server sees it
            with lock:
                opens = svc.state.connection()
            if opens:
                yield SLEEP, spec.connect, svc
        with lock:
            served = clock()
            outcome, retry_after, entered = admit(spec, svc.server, svc.state, served, tokens_in, tokens_out)
        if outcome == OK:
            outcome = attempt_outcome(spec.failures, u_fail)
        if outcome != RATE_LIMITED:
            if spec.batching is not None:
                reply = yield BATCH, 0.0, svc
                if reply is None:
                    outcome = REJECTED
                else:
                    served, batch = reply
            else:
                service_time = latency + spec.per_item * size
                if spec.timeout is not None and (outcome == TIMEOUT or service_time > spec.timeout):
                    outcome, service_time = TIMEOUT, spec.timeout
                served = yield SERVE, service_time, svc
        end = clock()
        if spec.connect:
            with lock:
                svc.state.connection_back()
        if spec.connections is not None:
            svc.connections.release()
        if entered:
            with lock:
                svc.state.leave()
        if outcome == RATE_LIMITED and cooldown:
            with lock:
                svc.state.pause(end + cooldown)
        if isinstance(served, list):
            # a preempted request was served in slices [(start, end), ...]: each gap is queueing again
            queued_since = sent
            for start, stop in served[:-1]:
                add(task, step, K_CALL, svc.res, queued_since, start, stop)
                queued_since = stop
            sent_for_record, served = queued_since, served[-1][0]
        else:
            sent_for_record = sent
        # a batching service's call carries its batch size (its share of the batch's time is 1/size)
        add(task, step, K_CALL, svc.res, sent_for_record, served, end,
            float(batch) if spec.batching is not None else 0.0)
        log(task, step, svc.res, attempt, outcome, sent, end, tokens_in, tokens_out, batch)
        if client_cpu is not None and client_cpu.after:  # reading the answer (or the error): the client's CPU
            yield LOCAL_CPU, client_cpu.after, here
        if outcome == OK:
            return
        if attempt + 1 == spec.attempts or OUTCOMES[outcome] not in spec.retry.retry_on:
            tries = f"after {attempt + 1} attempts" if attempt else "(not retried)"
            raise StepFailedError(f"{svc.name}: {OUTCOMES[outcome]} {tries}")
        delay = backoff_s(spec.retry, attempt, u_jitter, retry_after)
        if delay is None:
            raise StepFailedError(f"{svc.name}: {OUTCOMES[outcome]} after {attempt + 1} attempts (retry-after "
                                  f"{retry_after:g} s is above the client's window)")
        if delay > 0:
            asked = clock()
            yield SLEEP, delay, svc
            now = clock()
            add(task, step, K_THROTTLE, svc.backoff_res, asked, now, now)
