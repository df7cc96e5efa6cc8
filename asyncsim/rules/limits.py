"""Rate limits at run time, without a clock: token buckets and a client limiter that grants in policy order.

The runtime side of `services.RateLimit`: the caller passes the time (model seconds), so the simulator and
the real runner share every decision.
"""

from __future__ import annotations

import math
from typing import Any

from ..policies import Policy
from ..services import RateLimit
from .queues import WaitQueue

__all__ = ["Buckets", "CallState", "PolicyLimiter", "TokenBucket", "buckets"]


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

    def level(self, now: float) -> float:
        """Units in the bucket at `now` (below 0 while reservations are owed)."""
        return self._level(now)

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


class PolicyLimiter:
    """A client-side limiter that grants waiting requests their tokens in a policy's order (clock-free).

    `offer` grants at once when nobody waits and the buckets hold enough; otherwise the request waits.
    `grant(now)` takes tokens for waiting requests in policy order while the next one fits, and returns them
    with the time the next one will fit (None when nobody waits). Head-of-line: a large request at the head
    holds back smaller ones behind it (aiolimiter 1.3 instead wakes the smallest waiting amount first:
    exact for request limiters, where every amount is 1). As a dispatcher (the OpenAI cookbook's
    processor) it grants at most one request per `interval` s and none before `state.paused_until` (the
    client's pause after a 429): a paused dispatcher takes no tokens, so its buckets refill meanwhile.
    """

    __slots__ = ("buckets", "interval", "last", "queue", "state")

    def __init__(self, buckets: tuple[TokenBucket | None, TokenBucket | None], policy: Policy,
                 interval: float = 0.0, state: CallState | None = None) -> None:
        self.buckets = buckets
        self.queue = WaitQueue(policy)
        self.interval = interval
        self.state = state
        self.last = -math.inf  # when it last granted

    def _held(self, now: float) -> float:
        """When it may grant next (at or before `now`: it may grant now)."""
        paused = self.state.paused_until if self.state is not None else 0.0
        return max(paused, self.last + self.interval)

    def _short(self, now: float, charges: tuple[float, float]) -> float:
        return max((b.shortfall_s(now, a) for b, a in zip(self.buckets, charges, strict=True) if b is not None and a),
                   default=0.0)

    def _take(self, now: float, charges: tuple[float, float]) -> None:
        for bucket, amount in zip(self.buckets, charges, strict=True):
            if bucket is not None and amount:
                bucket.take(now, amount)

    def offer(self, request: Any, charges: tuple[float, float], ticket: Any, now: float) -> bool:
        """True: granted now; False: `request` waits for `grant`."""
        if not len(self.queue) and self._held(now) <= now and self._short(now, charges) == 0:
            self._take(now, charges)
            self.last = now
            return True
        self.queue.push((request, charges), ticket)
        return False

    def grant(self, now: float) -> tuple[list[Any], float | None]:
        """The waiting requests granted now (in order), and when to look again."""
        granted: list[Any] = []
        while len(self.queue):
            held = self._held(now)
            if held > now:
                return granted, held
            (request, charges), _ = self.queue.peek()
            short = self._short(now, charges)
            if short > 0:
                return granted, now + short if math.isfinite(short) else None
            self.queue.pop()
            self._take(now, charges)
            self.last = now
            granted.append(request)
        return granted, None


Buckets = tuple[TokenBucket | None, TokenBucket | None]
"""A rate limit's (requests, tokens) buckets."""


def buckets(limit: RateLimit | None, states: tuple[Any, Any] = (None, None)) -> Buckets | None:
    """The (requests, tokens) buckets of `limit` (None when there is no limit); `states` may be shared memory."""
    if limit is None:
        return None
    req, tok = limit.buckets()
    return (TokenBucket(*req, state=states[0]) if req else None, TokenBucket(*tok, state=states[1]) if tok else None)


class CallState:
    """What one service's calls share besides its buckets: the server's count of the key's requests in flight
    (for `server.concurrent_limit`), the client's pause after a 429 (`retry.cooldown`), and its connections
    busy and open (for `connect`), clock-free.

    SIZE numbers in `state`, which may be shared memory between processes; callers hold the endpoint's lock.
    """

    __slots__ = ("state",)
    SIZE = 4

    def __init__(self, state: Any = None) -> None:
        self.state = state if state is not None else [0.0] * self.SIZE
        for i in range(self.SIZE):
            self.state[i] = 0.0

    def full(self, cap: int | None) -> bool:
        """Whether a request sent now is over the server's cap of requests in flight."""
        return cap is not None and self.state[0] >= cap

    def enter(self) -> None:
        """A request the server accepted is in flight."""
        self.state[0] += 1

    def leave(self) -> None:
        """An accepted request is answered (or timed out)."""
        self.state[0] -= 1

    @property
    def paused_until(self) -> float:
        """When the client may send again (model seconds; 0 when it never paused)."""
        return float(self.state[1])

    def pause(self, until: float) -> None:
        """The client sends nothing before `until` (a later pause extends it)."""
        self.state[1] = max(self.state[1], until)

    def connection(self) -> bool:
        """An attempt takes a connection: whether it opens a new one (none that is open is idle). Connections
        stay open once opened (keep-alive), as a client's pool keeps them while it is busy."""
        self.state[2] += 1
        if self.state[2] > self.state[3]:
            self.state[3] += 1
            return True
        return False

    def connection_back(self) -> None:
        """An attempt is done with its connection: it stays open, idle."""
        self.state[2] -= 1
