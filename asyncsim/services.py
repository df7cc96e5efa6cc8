"""Services a `call` reaches, as model data: latency, tokens, rate limits, failures, retries, batching, prices.

Frozen, validated data, and the layout of the draws a call needs (`call_width`). What happens to one call —
buckets, outcomes, back-off, the attempt loop — is in `asyncsim.rules` (`calls`, `limits`, `queues`).
A 429 from a server-side limit costs no quota; a 5xx or a timeout happens after the server accepted the
request, so its tokens count as used (wasted quota).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ._model import Frozen
from .dists import Constant, Dist
from .policies import Policy

__all__ = [
    "ATTEMPT_FIELDS", "Batching", "CALL_HEAD", "CLIENT_PROFILES", "ClientCpu", "ClientProfile", "Failures",
    "OUTCOMES", "Price", "RateLimit", "Retry", "Server", "Service", "Tokens", "call_width", "client_profiles",
]

OK, RATE_LIMITED, SERVER_ERROR, TIMEOUT, REJECTED = range(5)
OUTCOMES = ("ok", "rate_limited", "server_error", "timeout", "rejected")
Retryable = Literal["rate_limited", "server_error", "timeout", "rejected"]
RETRYABLE: tuple[Retryable, ...] = ("rate_limited", "server_error", "timeout", "rejected")


class RateLimit(Frozen):
    """Requests and/or tokens per minute as token buckets refilled continuously.

    A bucket holds `window` seconds of refill (60: a minute's worth may burst; 1 or 10: the limit enforced over
    short windows, as Azure does), or `burst_requests` / `burst_tokens` when given. As a client-side limiter,
    `policy` is the order in which waiting requests get their tokens (fifo: aiolimiter's; a server has no queue);
    `interval` makes it a dispatcher that grants at most one request per `interval` seconds (the OpenAI
    cookbook's processor sends one per turn of its loop, which sleeps 1 ms) and sends nothing during the
    client's pause after a 429 (`retry.cooldown`): requests wait in its queue, in policy order. `per: call`:
    a client-side limiter taken once per call, around the client's own retries (`async with limiter: await
    client.chat.completions.create(...)`); `attempt`: before every attempt, retries included.
    """

    rpm: float | None = Field(None, gt=0)
    tpm: float | None = Field(None, gt=0)
    window: float = Field(60.0, gt=0)
    burst_requests: float | None = Field(None, gt=0)
    burst_tokens: float | None = Field(None, gt=0)
    count_max_tokens: bool = False
    policy: Policy = Field(default_factory=Policy)
    interval: float = Field(0.0, ge=0)
    per: Literal["attempt", "call"] = "attempt"

    @model_validator(mode="after")
    def _some_limit(self) -> RateLimit:
        if self.rpm is None and self.tpm is None:
            raise ValueError("give rpm, tpm or both")
        if self.burst_requests is not None and self.rpm is None:
            raise ValueError("burst_requests needs rpm")
        if self.burst_tokens is not None and self.tpm is None:
            raise ValueError("burst_tokens needs tpm")
        return self

    @property
    def dispatches(self) -> bool:
        """Whether waiting requests are granted in order by a dispatcher (`PolicyLimiter`), not by reserving
        their place in the buckets (FIFO, no pacing)."""
        return self.policy.kind != "fifo" or self.interval > 0

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
    """The client's retry policy for failed attempts (defaults: the openai-python 1.x client's).

    `exponential`: retry n (from 0) waits min(initial·multiplier^n, max_delay) × (1 − jitter·U);
    `full_jitter`: a uniform wait between `min_delay` and min(initial·multiplier^n, max_delay) (at least
    `min_delay`; tenacity's wait_random_exponential); `none`: never retry. When `honor_retry_after`, a server's
    retry-after inside `retry_after_window` (lo < ra <= hi) is waited instead; outside it the client backs off
    as above, or with `beyond_window: give_up` stops retrying when it is above the window. `cooldown`: after
    any 429 the client sends nothing at all for that many seconds (a client-wide pause, as the OpenAI
    cookbook's parallel processor does). `added_jitter`: up to that many seconds added to every wait, a
    retry-after's included (litellm's JITTER; the same uniform draw as `jitter`); `retry_after_whole`: only a
    whole number of seconds is read as a retry-after (litellm parses an integer; "1.5" falls back to back-off).
    """

    policy: Literal["none", "exponential", "full_jitter"] = "exponential"
    max_retries: int = Field(2, ge=0, le=100)
    initial: float = Field(0.5, ge=0)
    max_delay: float = Field(8.0, ge=0)
    min_delay: float = Field(0.0, ge=0)
    multiplier: float = Field(2.0, ge=1)
    jitter: float = Field(0.25, ge=0, le=1)
    added_jitter: float = Field(0.0, ge=0)
    honor_retry_after: bool = True
    retry_after_whole: bool = False
    retry_after_window: tuple[float, float] = (0.0, 60.0)
    beyond_window: Literal["backoff", "give_up"] = "backoff"
    cooldown: float = Field(0.0, ge=0)
    retry_on: tuple[Retryable, ...] = RETRYABLE

    @model_validator(mode="after")
    def _window(self) -> Retry:
        lo, hi = self.retry_after_window
        if not 0 <= lo < hi:
            raise ValueError(f"retry_after_window must be [lo, hi] with 0 <= lo < hi, got [{lo}, {hi}]")
        return self

    @property
    def attempts(self) -> int:
        """Most attempts a call makes."""
        return 1 if self.policy == "none" else self.max_retries + 1


class Server(Frozen):
    """How the provider's server refuses a request (a service's `server`).

    `retry_after` is the header of a rate-limit 429: `exact` (the seconds until the bucket holds the request),
    `ceil_seconds` (the same rounded up to whole seconds, at least 1: the `retry-after` header is an integer),
    `none` (no header: the client backs off on its own schedule), or a number of seconds sent with every 429
    (`{fixed: 1}` in YAML). `concurrent_limit` refuses a request with a 429 at once while that many of the
    key's requests are in flight (a cap separate from RPM, as some providers have); such a 429 carries the
    fixed retry-after if there is one, else none (the server cannot know when a slot frees).
    """

    retry_after: Literal["exact", "ceil_seconds", "none"] | float = "exact"
    concurrent_limit: int | None = Field(None, ge=1)

    @field_validator("retry_after", mode="before")
    @classmethod
    def _fixed(cls, value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) != {"fixed"}:
                raise ValueError("give exact, ceil_seconds, none, a number of seconds or {fixed: SECONDS}")
            value = value["fixed"]
        if isinstance(value, (int, float)) and not isinstance(value, bool) and (value < 0 or not math.isfinite(value)):
            raise ValueError(f"a fixed retry-after must be a finite number of seconds >= 0, got {value}")
        return value

    def rate_limited_header(self, short: float) -> float | None:
        """The retry-after of a 429 from the rate limit, `short` seconds before the request would fit (inf:
        never; then only a fixed header is sent)."""
        mode = self.retry_after
        if not isinstance(mode, str):
            return float(mode)
        if mode == "none" or not math.isfinite(short):
            return None
        return short if mode == "exact" else float(max(1, math.ceil(short - 1e-9)))

    def over_cap_header(self) -> float | None:
        """The retry-after of a 429 from the concurrency cap."""
        return None if isinstance(self.retry_after, str) else float(self.retry_after)


class ClientCpu(Frozen):
    """The client library's own CPU per request, on the thread that calls it (the event loop under asyncio;
    never sent to an executor): `before` building and sending each attempt, `after` reading its answer.
    `calibrate --client` measures it; the openai package here took about 1.4 ms each (research notes)."""

    before: float = Field(0.0, ge=0)
    after: float = Field(0.0, ge=0)


class ClientProfile(Frozen):
    """A client library's retry rules, as a named preset a service's `client` expands to; `source` says
    which version and which functions of its source they come from. A client's own timeout is not set by
    the profile (the source says what it is): give the service a `timeout` to model it."""

    source: str
    retry: dict[str, Any] | None  # None: a limiter, which leaves the retry rules to the client it is used with
    library: str | None = None  # the package whose CPU per request `calibrate --client` measures
    # the client's own limiter: its fixed rules (merged under the service's client_limit, which then must be
    # given: its rates are the user's settings); None: the library has no limiter
    client_limit: dict[str, Any] | None = None


def client_profiles(name: Any) -> list[ClientProfile]:
    """The profiles `client: NAME` names: one, or several joined by `+` (a retrying client and a limiter in
    front of it: `openai-python+aiolimiter`), whose rules apply left to right.

    Raises:
        ValueError: a name that is not a profile.
    """
    parts = name.split("+") if isinstance(name, str) else [name]
    unknown = [p for p in parts if not isinstance(p, str) or p.strip() not in CLIENT_PROFILES]
    if unknown:
        raise ValueError(f"client: unknown client profile {unknown[0]!r} (allowed: {', '.join(CLIENT_PROFILES)}, "
                         "or several joined by +)")
    return [CLIENT_PROFILES[p.strip()] for p in parts]


def _merged(preset: dict[str, Any], given: Any, model: type[Frozen]) -> Any:
    """A preset's fields under what the model gives (a dict or a validated `model`); anything else is left for
    the field's own validation to report."""
    if isinstance(given, model):
        given = given.model_dump(exclude_unset=True)
    if given is not None and not isinstance(given, dict):
        return given
    return {**preset, **(given or {})}


_ALL = list(RETRYABLE)
# the Stainless clients' back-off (openai-python, anthropic-python: _base_client.py, INITIAL_RETRY_DELAY 0.5,
# MAX_RETRY_DELAY 8, jitter 1 - 0.25 U)
_OPENAI = {"policy": "exponential", "max_retries": 2, "initial": 0.5, "max_delay": 8.0, "multiplier": 2.0,
           "jitter": 0.25, "honor_retry_after": True, "cooldown": 0.0, "retry_on": _ALL}
CLIENT_PROFILES: dict[str, ClientProfile] = {
    "openai-python": ClientProfile(
        source="openai-python 3.60 (the current release), openai/_base_client.py: BaseClient."
               "_calculate_retry_timeout (a retry-after-ms or retry-after header honoured when 0 < ra <= "
               "MAX_RETRY_AFTER_DELAY = 120 s, else min(0.5 * 2^n, 8) * (1 - 0.25 * U)), _should_retry (no retry "
               "when retry-after > 120 s; x-should-retry; 408, 409, 429, >= 500); _constants.py: "
               "DEFAULT_MAX_RETRIES = 2, DEFAULT_TIMEOUT = 600 s, 1000 connections",
        retry={**_OPENAI, "retry_after_window": (0.0, 120.0), "beyond_window": "give_up"}, library="openai"),
    "openai-python-1": ClientProfile(
        source="openai-python 1.x, src/openai/_base_client.py: BaseClient._calculate_retry_timeout (a "
               "retry-after-ms or retry-after header honoured when 0 < ra <= 60, else min(0.5 * 2^n, 8) * "
               "(1 - 0.25 * U), also above 60 s), _should_retry (408, 409, 429, >= 500, connection errors); "
               "_constants.py: DEFAULT_MAX_RETRIES = 2, DEFAULT_TIMEOUT = 600 s",
        retry={**_OPENAI, "retry_after_window": (0.0, 60.0), "beyond_window": "backoff"}, library="openai"),
    "anthropic-python": ClientProfile(
        source="anthropic-python 2.10 (the current release), anthropic/_base_client.py: BaseClient."
               "_calculate_retry_timeout (any retry-after-ms or retry-after header > 0 is honoured, capped only at "
               "2^32 ms, else min(0.5 * 2^n, 8) * (1 - 0.25 * U)), _should_retry (x-should-retry; 408, 409, 429, "
               ">= 500); _constants.py: DEFAULT_MAX_RETRIES = 2, DEFAULT_TIMEOUT = 600 s, 1000 connections",
        retry={**_OPENAI, "retry_after_window": (0.0, 4_294_967.0), "beyond_window": "backoff"},
        library="anthropic"),
    "openai-cookbook-processor": ClientProfile(
        source="openai-cookbook examples/api_request_parallel_processor.py: process_api_requests_from_file "
               "(seconds_to_pause_after_rate_limit_error = 15: after a 429 nothing is sent until 15 s after it; "
               "a failed request goes back on queue_of_requests_to_retry and is sent again at once, up to "
               "max_attempts = 5; its main loop takes a request from the retry queue first, else the next one, "
               "sends it when its limiter has a request and the request's tokens, sleeps "
               "seconds_to_sleep_each_loop = 0.001, then waits out any pause); its limiter (client_limit: give "
               "max_requests_per_minute and max_tokens_per_minute as rpm and tpm) holds a minute's capacity, "
               "starts full and refills continuously",
        retry={"policy": "exponential", "max_retries": 4, "initial": 0.0, "max_delay": 0.0, "jitter": 0.0,
               "honor_retry_after": False, "cooldown": 15.0, "retry_on": _ALL},
        client_limit={"window": 60.0, "interval": 0.001}, library="aiohttp"),
    "tenacity-random-exponential": ClientProfile(
        source="tenacity 9.x (9.2.1), tenacity/wait.py: wait_random_exponential(min=1, max=60) waits "
               "uniform(min, max(min, min(2^(attempt - 1), max))) (8.x drew uniform(0, ...): waits below min); "
               "stop_after_attempt(6), as the OpenAI cookbook's How_to_handle_rate_limits uses it around the "
               "client; it reads no retry-after header",
        retry={"policy": "full_jitter", "max_retries": 5, "initial": 1.0, "multiplier": 2.0, "max_delay": 60.0,
               "min_delay": 1.0, "jitter": 0.0, "honor_retry_after": False, "cooldown": 0.0, "retry_on": _ALL}),
    "litellm-router": ClientProfile(
        source="litellm 1.84 (the last release in Python; 1.110 keeps the constants), router.py: Router.__init__ "
               "(num_retries = openai's DEFAULT_MAX_RETRIES = 2; the inner openai client's max_retries = 0), "
               "should_retry_this_error (utils._should_retry: 408, 409, 429, >= 500), "
               "_time_to_sleep_before_retry -> utils._calculate_retry_after (a retry-after header parsed as a "
               "whole number of seconds, 0 < ra <= 60, waited + JITTER 0.75 * U; else min(0.5 * 2^n, "
               "MAX_RETRY_DELAY 8) + 0.75 * U; retry-after-ms is not read). Its cooldown "
               "(router_utils/cooldown_handlers.py: _should_cooldown_deployment) never cools a model group of one "
               "deployment on 429s or 5xx (only at 100% failures over >= 1000 requests), so none is modelled. "
               "Not modelled: it sleeps once more after the last failed attempt before raising",
        retry={"policy": "exponential", "max_retries": 2, "initial": 0.5, "max_delay": 8.0, "multiplier": 2.0,
               "jitter": 0.0, "added_jitter": 0.75, "honor_retry_after": True, "retry_after_whole": True,
               "retry_after_window": (0.0, 60.0), "beyond_window": "backoff", "cooldown": 0.0, "retry_on": _ALL}),
    "aiolimiter": ClientProfile(
        source="aiolimiter 1.3, leakybucket.py: AsyncLimiter(max_rate, time_period) — give client_limit with "
               "rpm = max_rate * 60 / time_period and window = time_period: it starts empty, so max_rate pass at "
               "once (_level = 0), leaks continuously (_leak), admits while level + amount <= max_rate "
               "(has_capacity) and wakes waiters one at a time from a heap of (amount, arrival) (_wake_next): "
               "FIFO for a request limiter (amount 1); taken once per call (async with limiter: around the "
               "client's call, whose own retries it does not see). A limiter, not a client: it retries "
               "nothing — put it in front of one, e.g. client: openai-python+aiolimiter",
        retry=None, client_limit={"policy": "fifo", "per": "call"}),
}


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
    client: str | None = None
    client_cpu: ClientCpu | None = None
    # the client's connection pool (httpx, aiohttp): an attempt holds a connection from sending until its answer
    # and waits for one, FIFO, when all are busy; released during back-off and limiter waits (unlike a
    # `use: {pool}` around the call, which holds its slot across retries). The wait counts as queueing
    connections: int | None = Field(None, ge=1)
    # seconds to open a new connection (TCP + TLS handshakes), paid by an attempt when no open connection is
    # idle; connections stay open (keep-alive). `asyncsim serve` and the twin do not delay connections
    connect: float = Field(0.0, ge=0)
    server: Server = Field(default_factory=Server)
    # the API's host name (api.openai.com): `asyncsim twin` answers a program's requests to it as this service
    host: str | None = Field(None, pattern=r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$")

    @model_validator(mode="before")
    @classmethod
    def _client_profile(cls, data: Any) -> Any:
        """`client: NAME` sets `retry` from the named profile; what the model gives wins."""
        if not isinstance(data, dict) or data.get("client") is None:
            return data
        name = data["client"]
        profiles = client_profiles(name)
        rules = [p.retry for p in profiles if p.retry is not None]
        retry: dict[str, Any] = {} if rules else {"policy": "none"}  # a limiter alone retries nothing
        for rule in rules:
            retry.update(rule)
        data = {**data, "retry": _merged(retry, data.get("retry"), Retry)}
        limits = [p.client_limit for p in profiles if p.client_limit is not None]
        if limits:
            if data.get("client_limit") is None:
                raise ValueError(f"client: {name} has a limiter of its own: give client_limit (its requests and "
                                 "tokens per minute, e.g. {rpm: 1500, tpm: 125000})")
            data["client_limit"] = _merged({k: v for lim in limits for k, v in lim.items()}, data["client_limit"],
                                           RateLimit)
        return data

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
        if self.rate_limit is not None and self.rate_limit.per != "attempt":
            raise ValueError("rate_limit.per: a server-side limit counts every attempt it receives")
        if self.rate_limit is not None and self.rate_limit.interval:
            raise ValueError("rate_limit.interval: a server-side limit answers 429 at once and paces nothing; "
                             "pace the client's sends with client_limit.interval")
        if self.client_limit is not None and self.client_limit.policy.preemptive:
            raise ValueError("client_limit.policy: tokens already granted cannot be taken back (not preemptive)")
        if self.batching is not None and self.server.concurrent_limit is not None:
            raise ValueError("server.concurrent_limit caps an API's requests in flight; a batching service sheds "
                             "load with batching.max_queue")
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
                or self.server.concurrent_limit is not None
                or (self.batching is not None and self.batching.max_queue is not None))

    @property
    def attempts(self) -> int:
        """Most attempts one call makes (1 + retries; 1 when nothing can fail)."""
        return self.retry.attempts if self.can_fail else 1

    @property
    def waits_to_retry(self) -> bool:
        """Whether a call can wait before an attempt: a back-off between retries, or the client's pause."""
        return self.attempts > 1 or self.retry.cooldown > 0


# ------------------------------------------------------------------------------- the draws of a call


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
