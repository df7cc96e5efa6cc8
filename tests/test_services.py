"""The pure rules of services: token buckets, attempt outcomes, back-off schedules, batching decisions, and
the emulated batcher's virtual-time schedule (decisions dated by their cause, however late computed)."""

from __future__ import annotations

import math

import pytest

from asyncsim.real.service import BatchSchedule
from asyncsim.rules.calls import (
    BATCH,
    SERVE,
    SLEEP,
    UNLOCKED,
    StepFailedError,
    attempt_outcome,
    attempts,
    backoff_s,
)
from asyncsim.rules.limits import TokenBucket, buckets
from asyncsim.rules.queues import BatchQueue
from asyncsim.services import OK, RATE_LIMITED, SERVER_ERROR, TIMEOUT, Batching, Failures, RateLimit, Retry, Service

# ---------------------------------------------------------------------------------------- TokenBucket


def test_a_bucket_starts_full_and_refills_continuously_up_to_its_capacity():
    b = TokenBucket(rate=2.0, capacity=4.0)
    assert b.shortfall_s(0.0, 4.0) == 0.0
    b.take(0.0, 4.0)
    assert b.shortfall_s(0.0, 1.0) == pytest.approx(0.5)  # 1 token at 2/s
    assert b.shortfall_s(1.0, 2.0) == 0.0  # refilled 2 by t=1
    assert b.shortfall_s(100.0, 4.0) == 0.0
    assert b.shortfall_s(100.0, 4.5) == math.inf  # never fits: more than the burst
    b.take(100.0, 4.0)
    assert b.shortfall_s(100.0, 1.0) == pytest.approx(0.5)  # capped at capacity, not 200 tokens


def test_reserve_serves_callers_in_fifo_order_by_going_into_debt():
    b = TokenBucket(rate=10.0, capacity=2.0)
    waits = [b.reserve(0.0, 1.0) for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3])  # each waits behind the debt of those before
    assert b.reserve(0.35, 1.0) == pytest.approx(0.05)  # 3 owed at t=0, 3.5 refilled: 0.5 short
    assert b.shortfall_s(0.4, 1.0) == pytest.approx(0.1)  # the debt delays a server-side taker too


def test_rate_limit_buckets_hold_a_window_of_refill_or_the_given_burst():
    req, tok = RateLimit(rpm=600, tpm=60_000, window=10).buckets()
    assert req == (10.0, 100.0)
    assert tok == (1000.0, 10_000.0)
    req, tok = RateLimit(rpm=60, burst_requests=3).buckets()
    assert req == (1.0, 3.0)
    assert tok is None
    assert RateLimit(rpm=30, window=1).buckets()[0] == (0.5, 1.0)  # at least one request fits


def test_shared_state_is_reset_to_a_full_bucket():
    state = [0.0, 7.0]
    b = TokenBucket(rate=1.0, capacity=3.0, state=state)
    assert state == [3.0, 0.0]
    b.take(0.0, 1.0)
    assert state == [2.0, 0.0]


# --------------------------------------------------------------------------------------- outcomes


def test_attempt_outcome_splits_the_unit_interval_in_order():
    f = Failures(rate_limited=0.1, server_error=0.2, timeout=0.3)
    assert [attempt_outcome(f, u) for u in (0.0, 0.099, 0.1, 0.299, 0.31, 0.599, 0.61, 0.999)] == [
        RATE_LIMITED, RATE_LIMITED, SERVER_ERROR, SERVER_ERROR, TIMEOUT, TIMEOUT, OK, OK]
    assert attempt_outcome(Failures(), 0.0) == OK


# ---------------------------------------------------------------------------------------- back-off


@pytest.mark.parametrize("n", range(6))
@pytest.mark.parametrize("u", [0.0, 0.3, 0.999])
def test_exponential_backoff_is_openai_pythons_formula(n, u):
    # openai-python _calculate_retry_timeout: min(0.5 * 2**n, 8.0) * (1 - 0.25 * random())
    assert backoff_s(Retry(), n, u) == pytest.approx(min(0.5 * 2**n, 8.0) * (1 - 0.25 * u))


@pytest.mark.parametrize("n", range(6))
@pytest.mark.parametrize("u", [0.0, 0.5, 0.999])
def test_full_jitter_is_tenacitys_wait_random_exponential(n, u):
    # tenacity wait_random_exponential(multiplier=1, max=10): uniform(0, min(1 * 2**n, 10))
    retry = Retry(policy="full_jitter", initial=1.0, max_delay=10.0)
    assert backoff_s(retry, n, u) == pytest.approx(u * min(2**n, 10.0))


def test_retry_after_is_honoured_between_0_and_60_seconds_unless_disabled():
    assert backoff_s(Retry(), 0, 0.5, retry_after=2.5) == 2.5
    assert backoff_s(Retry(), 0, 0.5, retry_after=61.0) == pytest.approx(0.5 * (1 - 0.125))
    assert backoff_s(Retry(honor_retry_after=False), 1, 0.0, retry_after=2.5) == 1.0
    assert Retry(policy="none").attempts == 1
    assert Retry().attempts == 3


# --------------------------------------------------------------------------------------- BatchQueue


def test_batch_queue_waits_for_max_delay_or_a_full_batch():
    q = BatchQueue(Batching(max_batch=3, max_delay=0.01, instances=1))
    assert q.next_batch(0.0) is None
    assert q.offer("a", 0.0)
    assert q.next_batch(0.0) == pytest.approx(0.01)  # look again when the oldest has waited max_delay
    assert q.offer("b", 0.004)
    assert q.next_batch(0.005) == pytest.approx(0.01)
    assert q.next_batch(0.01) == ["a", "b"]  # due: launches what is there
    assert all([q.offer("c", 0.011), q.offer("d", 0.012), q.offer("e", 0.013)])
    assert q.next_batch(0.013) is None  # full, but the only instance is busy
    q.finished()
    assert q.next_batch(0.02) == ["c", "d", "e"]  # full: launches at once


def test_batch_queue_rejects_beyond_max_queue_and_takes_at_most_max_batch():
    q = BatchQueue(Batching(max_batch=2, instances=2, max_queue=3))
    assert [q.offer(k, 0.0) for k in range(4)] == [True, True, True, False]
    assert q.next_batch(0.0) == [0, 1]
    assert q.next_batch(0.0) == [2]  # max_delay 0: due at once, on the second instance
    assert q.next_batch(0.0) is None
    assert Batching(max_batch=4, fixed=0.01, per_item=0.002).batch_time(3) == pytest.approx(0.016)


# ------------------------------------------------------------------------ the batcher in virtual time


def test_batch_schedule_dates_decisions_by_their_cause_not_by_when_they_are_computed():
    spec = Batching(max_batch=2, max_delay=0.01, fixed=0.1)
    punctual, late = BatchSchedule(spec), BatchSchedule(spec)
    for s in (punctual, late):
        assert s.submit(0.0) == 0
        assert s.launched == {}
        assert s.next_event() == pytest.approx(0.01)
    punctual.advance(0.01)
    late.advance(0.5)  # a server thread that woke up 490 ms late
    assert punctual.launched[0] == late.launched[0] == pytest.approx((0.01, 0.11, 1))
    # two arrivals fill a batch at once; the instance is busy until 0.11 (first) and then starts the next
    s = BatchSchedule(spec)
    assert (s.submit(0.0), s.submit(0.002)) == (0, 1)
    assert s.launched[0] == s.launched[1] == pytest.approx((0.002, 0.102, 2))
    s.submit(0.05)
    s.advance(1.0)
    assert s.launched[2] == pytest.approx((0.102, 0.202, 1))


def test_batch_schedule_rejects_at_the_admission_cap():
    s = BatchSchedule(Batching(max_batch=1, fixed=1.0, max_queue=1))
    assert s.submit(0.0) == 0  # served at once
    assert s.submit(0.1) == 1  # queued behind it
    assert s.submit(0.2) is None  # the queue is full
    s.advance(1.05)
    assert s.launched[1] == pytest.approx((1.0, 2.0, 1))


# ------------------------------------------------------------------------------- the attempt loop


class _Svc:
    def __init__(self, spec: Service) -> None:
        self.name, self.spec, self.res, self.limiter_res, self.backoff_res = "api", spec, 0, 1, 2
        self.server, self.client = buckets(spec.rate_limit), buckets(spec.client_limit)
        self.lock = UNLOCKED


def _drive(spec: Service, durs: list[float], col: int, *, clock: list[float]):
    """Drive `attempts` by hand, advancing a fake clock; returns the commands, records and call log."""
    records, log, commands = [], [], []
    steps = attempts(_Svc(spec), 0, 0, col, durs, 1, clock=lambda: clock[0], add=lambda *r: records.append(r),
                     log=lambda *r: log.append(r))
    reply = None
    try:
        while True:
            what, seconds, _ = steps.send(reply)
            commands.append((what, round(seconds, 9)))
            reply = clock[0] if what == SERVE else None
            if what == BATCH:
                reply = (clock[0], 1)
            clock[0] += seconds
    except StopIteration:
        pass
    return commands, records, log


def test_attempts_retry_a_5xx_after_the_backoff_then_succeed():
    spec = Service(latency=a_const(0.05), failures=Failures(server_error=0.5), retry=Retry(initial=0.2))
    # columns: tokens in, out, then per attempt: latency, failure uniform, jitter uniform
    durs = [0.0, 0.0, 0.0, 0.05, 0.1, 0.0, 0.07, 0.9, 0.0, 0.0, 0.0, 0.0]
    commands, records, log = _drive(spec, durs, 1, clock=[0.0])
    assert commands == [(SERVE, 0.05), (SLEEP, 0.2), (SERVE, 0.07)]
    # kind, enqueue, end of: the call, the back-off (throttle), the call
    assert [x for r in records for x in (r[2], r[4], r[6])] == pytest.approx([2, 0.0, 0.05, 6, 0.05, 0.25,
                                                                               2, 0.25, 0.32])
    assert [(row[3], row[4]) for row in log] == [(0, SERVER_ERROR), (1, OK)]
    assert log[1][5] == pytest.approx(0.25)  # sent after the first answer and the back-off


def test_attempts_out_of_retries_raise_with_the_simulators_wording():
    spec = Service(latency=a_const(0.05), failures=Failures(server_error=1.0), retry=Retry(max_retries=1))
    with pytest.raises(StepFailedError, match=r"^api: server_error after 2 attempts$"):
        _drive(spec, [0.0, 0.0, 0.0, 0.05, 0.0, 0.0, 0.05, 0.0, 0.0], 1, clock=[0.0])


def test_attempts_wait_for_the_client_limiter_and_record_it():
    spec = Service(latency=a_const(0.01), client_limit=RateLimit(rpm=60, burst_requests=1))
    svc = _Svc(spec)
    svc.client[0].take(0.0, 1.0)  # the only token is gone: the next request waits 1 s
    records, log = [], []
    steps = attempts(svc, 0, 0, -1, [0.01], 1, clock=lambda: 0.0, add=lambda *r: records.append(r),
                     log=lambda *r: log.append(r))
    assert next(steps) == (SLEEP, pytest.approx(1.0), svc)


def a_const(x: float):
    from asyncsim.dists import Constant

    return Constant(x)
