"""Services a `call` reaches, and what happens to one call: rate limits, failures, retries, batching.

The data (frozen, validated) and the pure rules both executors share, so the simulator and the real runner
decide a call's fate the same way from the same draws:

* `TokenBucket`: a continuously refilled bucket. The server side `try_take`s (429 with retry-after when short);
  a client-side limiter `reserve`s (FIFO, may go into debt: the caller sleeps the returned wait), as aiolimiter.
* `attempt_outcome`: a drawn uniform and the failure probabilities decide OK / 429 / 5xx / timeout.
* `backoff_s`: the wait before retry n (openai-python's exponential backoff with jitter, or full jitter).

A 429 from a server-side limit costs no quota; a 5xx or a timeout happens after the server accepted the
request, so its tokens count as used (wasted quota).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Literal

from pydantic import Field, model_validator

from ._model import Frozen
from .dists import Constant, Dist
from .policies import Policy

__all__ = [
    "ATTEMPT_FIELDS", "BatchQueue", "Batching", "Failures", "OUTCOMES", "PolicyLimiter", "Price", "RateLimit", "Retry",
    "Service", "TokenBucket",
    "Tokens", "accepted", "attempt_outcome", "backoff_s", "call_width",
]

OK, RATE_LIMITED, SERVER_ERROR, TIMEOUT, REJECTED = range(5)
OUTCOMES = ("ok", "rate_limited", "server_error", "timeout", "rejected")
RETRYABLE = ("rate_limited", "server_error", "timeout", "rejected")


class RateLimit(Frozen):
    """Requests and/or tokens per minute as token buckets refilled continuously.

    A bucket holds `window` seconds of refill (60: a minute's worth may burst; 1 or 10: the limit enforced over
    short windows, as Azure does), or `burst_requests` / `burst_tokens` when given. As a client-side limiter,
    `policy` is the order in which waiting requests get their tokens (fifo: aiolimiter's; a server has no queue).
    """

    rpm: float | None = Field(None, gt=0)
    tpm: float | None = Field(None, gt=0)
    window: float = Field(60.0, gt=0)
    burst_requests: float | None = Field(None, gt=0)
    burst_tokens: float | None = Field(None, gt=0)
    count_max_tokens: bool = False
    policy: Policy = Field(default_factory=Policy)

    @model_validator(mode="after")
    def _some_limit(self) -> RateLimit:
        if self.rpm is None and self.tpm is None:
            raise ValueError("give rpm, tpm or both")
        if self.burst_requests is not None and self.rpm is None:
            raise ValueError("burst_requests needs rpm")
        if self.burst_tokens is not None and self.tpm is None:
            raise ValueError("burst_tokens needs tpm")
        return self

    def buckets(self) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
        """(rate per second, capacity) of the request bucket and of the token bucket (None when unlimited)."""
        req = tok = None
        if self.rpm is not None:
            req = (self.rpm / 60, self.burst_requests or max(1.0, self.rpm / 60 * self.window))
        if self.tpm is not None:
            tok = (self.tpm / 60, self.burst_tokens or self.tpm / 60 * self.window)
        return req, tok


class Tokens(Frozen):
    """Tokens per request: input (prompt) and output (completion), drawn per call; output capped at max_tokens."""

    input: Dist = Field(default_factory=lambda: Constant(0.0))
    output: Dist = Field(default_factory=lambda: Constant(0.0))
    max_tokens: int | None = Field(None, ge=1)


class Failures(Frozen):
    """Probabilities that an attempt fails: a 429 without retry-after, a 5xx, a timeout (each per attempt)."""

    rate_limited: float = Field(0.0, ge=0, le=1)
    server_error: float = Field(0.0, ge=0, le=1)
    timeout: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _sum(self) -> Failures:
        if self.rate_limited + self.server_error + self.timeout > 1:
            raise ValueError("the failure probabilities add up to more than 1")
        return self

    @property
    def any(self) -> bool:
        """Whether any failure can happen."""
        return self.rate_limited + self.server_error + self.timeout > 0


class Retry(Frozen):
    """The client's retry policy for failed attempts (defaults: the openai-python client's).

    `exponential`: retry n (from 0) waits min(initial·multiplier^n, max_delay) × (1 − jitter·U);
    `full_jitter`: U × min(initial·multiplier^n, max_delay) (tenacity's wait_random_exponential);
    `none`: never retry. A retry-after between 0 and 60 s is honoured instead when `honor_retry_after`.
    """

    policy: Literal["none", "exponential", "full_jitter"] = "exponential"
    max_retries: int = Field(2, ge=0, le=100)
    initial: float = Field(0.5, ge=0)
    max_delay: float = Field(8.0, ge=0)
    multiplier: float = Field(2.0, ge=1)
    jitter: float = Field(0.25, ge=0, le=1)
    honor_retry_after: bool = True
    retry_on: tuple[Literal["rate_limited", "server_error", "timeout", "rejected"], ...] = RETRYABLE

    @property
    def attempts(self) -> int:
        """Most attempts a call makes."""
        return 1 if self.policy == "none" else self.max_retries + 1


class Batching(Frozen):
    """A dynamic batcher in front of the service's instances (Triton's dynamic_batching).

    An idle instance takes up to `max_batch` queued requests once `max_batch` are queued or the oldest has
    waited `max_delay` s; the batch takes `fixed + per_item × size` s. More than `max_queue` waiting requests
    are rejected (a 503).
    """

    max_batch: int = Field(ge=1)
    max_delay: float = Field(0.0, ge=0)
    fixed: float = Field(0.0, ge=0)
    per_item: float = Field(0.0, ge=0)
    instances: int = Field(1, ge=1)
    max_queue: int | None = Field(None, ge=1)

    def batch_time(self, size: int) -> float:
        """Seconds one batch of `size` items takes."""
        return self.fixed + self.per_item * size


class Price(Frozen):
    """What a service, a pool or a stage costs, in one currency throughout a model (dollars in the shipped ones).

    Usage is billed per request the server accepted (an OK, or a 5xx/timeout after it accepted: the quota and
    the tokens are spent; a 429 or a rejected request costs nothing): `input_per_1m` and `output_per_1m` per
    million tokens, `per_request` per request. Capacity is billed whether used or not: `per_second` per slot,
    instance or worker for the run's T_total (a self-hosted server's `concurrency` or batching `instances`, a
    pool's `capacity`, a stage's `workers`).
    """

    input_per_1m: float = Field(0.0, ge=0)
    output_per_1m: float = Field(0.0, ge=0)
    per_request: float = Field(0.0, ge=0)
    per_second: float = Field(0.0, ge=0)

    @property
    def usage(self) -> bool:
        """Whether requests themselves cost something."""
        return bool(self.input_per_1m or self.output_per_1m or self.per_request)


class Service(Frozen):
    """A shared external service reached by `call`.

    Latency per attempt is `latency`, or `ttft + tpot × (output tokens − 1)` (token-based), or set by the
    `batching` rule; `per_item` adds seconds per item when a request carries several (a pipeline batch).
    `concurrency` caps requests served at once (FIFO queue); `rate_limit` is enforced by the server (429 with
    retry-after); `client_limit` is a limiter the client waits on. `timeout` is the client's: an attempt
    slower than it fails as a timeout after `timeout` s. `policy` orders the server's queue (preemptive
    priority suspends a lower-priority request in service and resumes it later). `price` bills its requests,
    tokens and provisioned instances (see `Price`).
    """

    latency: Dist | None = None
    ttft: Dist | None = None
    tpot: Dist | None = None
    tokens: Tokens | None = None
    per_item: float = Field(0.0, ge=0)
    concurrency: int | None = Field(None, ge=1)
    rate_limit: RateLimit | None = None
    client_limit: RateLimit | None = None
    failures: Failures = Field(default_factory=Failures)
    timeout: float | None = Field(None, gt=0)
    retry: Retry = Field(default_factory=Retry)
    batching: Batching | None = None
    policy: Policy = Field(default_factory=Policy)
    price: Price | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Service:
        forms = [self.latency is not None, self.ttft is not None or self.tpot is not None, self.batching is not None]
        if sum(forms) != 1:
            raise ValueError("give exactly one latency form: latency, ttft and tpot (token-based), or batching")
        if (self.ttft is None) != (self.tpot is None):
            raise ValueError("token-based latency needs both ttft and tpot")
        if self.tpot is not None and self.tokens is None:
            raise ValueError("token-based latency (ttft, tpot) needs tokens.output")
        for name, limit in (("rate_limit", self.rate_limit), ("client_limit", self.client_limit)):
            if limit is not None and limit.tpm is not None and self.tokens is None:
                raise ValueError(f"{name}.tpm counts tokens: give tokens (input and output per request)")
            if limit is not None and limit.count_max_tokens and (self.tokens is None or self.tokens.max_tokens is None):
                raise ValueError(f"{name}.count_max_tokens needs tokens.max_tokens")
        if self.failures.timeout > 0 and self.timeout is None:
            raise ValueError("failures.timeout needs timeout (how long the client waits before giving up)")
        if self.batching is not None and self.concurrency is not None:
            raise ValueError("a batching service has batching.instances, not concurrency")
        if self.rate_limit is not None and self.rate_limit.policy.kind != "fifo":
            raise ValueError("rate_limit.policy: a server-side limit answers 429 at once and queues nothing; "
                             "order the waiters of a client_limit instead")
        if self.client_limit is not None and self.client_limit.policy.preemptive:
            raise ValueError("client_limit.policy: tokens already granted cannot be taken back (not preemptive)")
        if self.batching is not None and self.timeout is not None:
            raise ValueError("timeout is not supported on a batching service (use batching.max_queue to shed load)")
        if self.price is not None and (self.price.input_per_1m or self.price.output_per_1m) and self.tokens is None:
            raise ValueError("price: input_per_1m and output_per_1m bill tokens; give tokens (sizes per request)")
        if self.price is not None and self.price.per_second and self.instances is None:
            raise ValueError("price.per_second bills provisioned instances; give concurrency (or batching."
                             "instances), or bill usage with per_request / input_per_1m / output_per_1m")
        return self

    @property
    def instances(self) -> int | None:
        """Requests it serves at once (None: unbounded, a provider's API)."""
        return self.batching.instances if self.batching is not None else self.concurrency

    @property
    def can_fail(self) -> bool:
        """Whether an attempt can fail (and so be retried)."""
        return (self.failures.any or self.rate_limit is not None or self.timeout is not None
                or (self.batching is not None and self.batching.max_queue is not None))

    @property
    def attempts(self) -> int:
        """Most attempts one call makes (1 + retries; 1 when nothing can fail)."""
        return self.retry.attempts if self.can_fail else 1


# ----------------------------------------------------------------------------------------- the rules


# Per call, the scenario draws: input tokens, output tokens, then per attempt: latency, a failure uniform,
# a jitter uniform. `call_width` is the number of columns.
ATTEMPT_FIELDS = 3
CALL_HEAD = 2


def call_width(service: Service) -> int:
    """Columns of draws one call to `service` needs beyond its node's own (0 for a plain latency that cannot
    fail: the node's column holds it)."""
    if service.tokens is None and not service.can_fail and service.latency is not None:
        return 0
    return CALL_HEAD + ATTEMPT_FIELDS * service.attempts


def charged_tokens(service: Service, limit: RateLimit, tokens_in: float, tokens_out: float) -> float:
    """Tokens a request is charged against `limit` (max_tokens reserved when the provider counts it)."""
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


def backoff_s(retry: Retry, n: int, u: float, retry_after: float | None = None) -> float:
    """Seconds to wait before retry `n` (0 for the first), from a jitter uniform `u` in [0, 1)."""
    if retry_after is not None and retry.honor_retry_after and 0 <= retry_after <= 60:
        return retry_after
    ceiling = min(retry.initial * retry.multiplier**n, retry.max_delay)
    if retry.policy == "full_jitter":
        return u * ceiling
    return ceiling * (1 - retry.jitter * u)


class TokenBucket:
    """A continuously refilled bucket of `capacity` units at `rate` per second, starting full.

    Its state is two numbers (level, time of the level) in `state`, which may be shared memory between
    processes; callers serialise access (a lock) when several threads use one bucket.
    """

    __slots__ = ("capacity", "rate", "state")

    def __init__(self, rate: float, capacity: float, state: Any = None) -> None:
        self.rate = rate
        self.capacity = capacity
        self.state = state if state is not None else [capacity, 0.0]
        if state is not None:
            state[0], state[1] = capacity, 0.0

    def _level(self, now: float) -> float:
        level, then = self.state[0], self.state[1]
        return min(self.capacity, level + (now - then) * self.rate) if now > then else level

    def shortfall_s(self, now: float, amount: float) -> float:
        """Seconds until `amount` is available (0 when it is now); inf when it never fits."""
        if amount > self.capacity:
            return math.inf
        missing = amount - self._level(now)
        # a level short by rounding error is full: a server would not answer "retry after 1e-17 s"
        return missing / self.rate if missing > 1e-9 * max(1.0, amount) else 0.0

    def take(self, now: float, amount: float) -> None:
        """Remove `amount` now (the level may go below 0: a reservation the caller waits out)."""
        level = self._level(now)
        self.state[0], self.state[1] = level - amount, max(now, self.state[1])

    def reserve(self, now: float, amount: float) -> float:
        """Client-side: take `amount` in FIFO order; returns the seconds to wait before using it."""
        missing = amount - self._level(now)
        self.take(now, amount)
        return missing / self.rate if missing > 0 else 0.0


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


class PolicyLimiter:
    """A client-side limiter that grants waiting requests their tokens in a policy's order (clock-free).

    `offer` grants at once when nobody waits and the buckets hold enough; otherwise the request waits.
    `grant(now)` takes tokens for waiting requests in policy order while the next one fits, and returns them
    with the time the next one will fit (None when nobody waits). Head-of-line: a large request at the head
    holds back smaller ones behind it, as aiolimiter's FIFO does.
    """

    __slots__ = ("buckets", "queue")

    def __init__(self, buckets: tuple[TokenBucket | None, TokenBucket | None], policy: Policy) -> None:
        from .policies import WaitQueue

        self.buckets = buckets
        self.queue = WaitQueue(policy)

    def _short(self, now: float, charges: tuple[float, float]) -> float:
        return max((b.shortfall_s(now, a) for b, a in zip(self.buckets, charges, strict=True) if b is not None and a),
                   default=0.0)

    def _take(self, now: float, charges: tuple[float, float]) -> None:
        for bucket, amount in zip(self.buckets, charges, strict=True):
            if bucket is not None and amount:
                bucket.take(now, amount)

    def offer(self, request: Any, charges: tuple[float, float], ticket: Any, now: float) -> bool:
        """True: granted now; False: `request` waits for `grant`."""
        if not len(self.queue) and self._short(now, charges) == 0:
            self._take(now, charges)
            return True
        self.queue.push((request, charges), ticket)
        return False

    def grant(self, now: float) -> tuple[list[Any], float | None]:
        """The waiting requests granted now (in order), and when to look again."""
        granted = []
        while len(self.queue):
            (request, charges), _ = self.queue.peek()
            short = self._short(now, charges)
            if short > 0:
                return granted, now + short if math.isfinite(short) else None
            self.queue.pop()
            self._take(now, charges)
            granted.append(request)
        return granted, None
