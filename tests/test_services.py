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
from asyncsim.rules.limits import CallState, TokenBucket, buckets
from asyncsim.rules.queues import BatchQueue
from asyncsim.services import (
    CLIENT_PROFILES,
    OK,
    RATE_LIMITED,
    SERVER_ERROR,
    TIMEOUT,
    Batching,
    Failures,
    RateLimit,
    Retry,
    Server,
    Service,
)

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


def test_retry_after_is_honoured_inside_the_clients_window_unless_disabled():
    # openai-python 1.x (_base_client.py, _calculate_retry_timeout): honoured when 0 < ra <= 60
    assert backoff_s(Retry(), 0, 0.5, retry_after=2.5) == 2.5
    assert backoff_s(Retry(), 0, 0.5, retry_after=60.0) == 60.0
    assert backoff_s(Retry(), 0, 0.5, retry_after=61.0) == pytest.approx(0.5 * (1 - 0.125))
    assert backoff_s(Retry(), 0, 0.5, retry_after=0.0) == pytest.approx(0.5 * (1 - 0.125))  # 0 is not > 0
    wide = Retry(retry_after_window=(0.0, 120.0), beyond_window="give_up")
    assert backoff_s(wide, 0, 0.5, retry_after=90.0) == 90.0
    assert backoff_s(wide, 0, 0.5, retry_after=121.0) is None  # the client stops retrying
    assert backoff_s(Retry(honor_retry_after=False), 1, 0.0, retry_after=2.5) == 1.0
    assert Retry(policy="none").attempts == 1
    assert Retry().attempts == 3


@pytest.mark.parametrize("n", range(7))
@pytest.mark.parametrize("u", [0.0, 0.5, 0.999])
def test_full_jitter_with_a_minimum_is_tenacitys_wait_random_exponential_min_1_max_60(n, u):
    # tenacity/wait.py: uniform(min, clamp(multiplier * 2**(attempt_number - 1), min, max)), min=1, max=60
    retry = Retry(policy="full_jitter", initial=1.0, min_delay=1.0, max_delay=60.0)
    upper = max(1.0, min(2.0**n, 60.0))
    assert backoff_s(retry, n, u) == pytest.approx(1.0 + u * (upper - 1.0))


@pytest.mark.parametrize(("mode", "short", "header"), [
    ("exact", 0.3, 0.3), ("ceil_seconds", 0.3, 1.0), ("ceil_seconds", 1.0, 1.0), ("ceil_seconds", 1.2, 2.0),
    ("none", 0.3, None), (2.0, 0.3, 2.0), ("exact", math.inf, None), (2.0, math.inf, 2.0),
])
def test_a_servers_retry_after_header_by_mode(mode, short, header):
    assert Server(retry_after=mode).rate_limited_header(short) == header


def test_a_fixed_retry_after_is_written_as_a_number_or_fixed_and_checked():
    assert Server.model_validate({"retry_after": {"fixed": 1}}).retry_after == 1.0
    assert Server.model_validate({"retry_after": 1}).over_cap_header() == 1.0
    assert Server().over_cap_header() is None
    with pytest.raises(ValueError, match="fixed retry-after must be a finite number of seconds >= 0"):
        Server(retry_after=-1.0)
    with pytest.raises(ValueError, match="exact, ceil_seconds, none"):
        Server.model_validate({"retry_after": {"after": 1}})


def test_a_client_profile_expands_to_its_documented_retry_rules_and_can_be_overridden():
    openai = Service.model_validate({"latency": 0.1, "client": "openai-python"})
    assert (openai.retry.max_retries, openai.retry.initial, openai.retry.max_delay, openai.retry.jitter) == (
        2, 0.5, 8.0, 0.25)
    assert (openai.retry.retry_after_window, openai.retry.beyond_window) == ((0.0, 120.0), "give_up")  # 3.60
    first = Service.model_validate({"latency": 0.1, "client": "openai-python-1"})
    assert (first.retry.retry_after_window, first.retry.beyond_window) == ((0.0, 60.0), "backoff")  # 1.x
    assert openai.timeout is None  # its 600 s is in the profile's source; a model gives timeout to use it
    cookbook = Service.model_validate({"latency": 0.1, "client": "openai-cookbook-processor",
                                       "retry": {"max_retries": 2}, "client_limit": {"rpm": 600, "window": 10}})
    assert (cookbook.retry.cooldown, cookbook.retry.max_retries, cookbook.retry.honor_retry_after) == (15.0, 2, False)
    assert (cookbook.client_limit.interval, cookbook.client_limit.window) == (0.001, 10.0)  # the user's window wins
    with pytest.raises(ValueError, match=r"openai-cookbook-processor has a limiter of its own: give client_limit"):
        Service.model_validate({"latency": 0.1, "client": "openai-cookbook-processor"})
    anthropic = Service.model_validate({"latency": 0.1, "client": "anthropic-python"})
    assert backoff_s(anthropic.retry, 0, 0.5, retry_after=600.0) == 600.0  # honoured however long
    assert backoff_s(openai.retry, 0, 0.5, retry_after=600.0) is None  # openai-python 3.60 gives up above 120 s
    tenacity = Service.model_validate({"latency": 0.1, "client": "tenacity-random-exponential"})
    assert (tenacity.retry.policy, tenacity.retry.min_delay, tenacity.retry.attempts) == ("full_jitter", 1.0, 6)
    with pytest.raises(ValueError, match=r"unknown client profile 'openai' \(allowed: openai-python, "):
        Service.model_validate({"latency": 0.1, "client": "openai"})


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
        self.state = CallState()
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


def test_a_request_over_the_servers_concurrency_cap_gets_a_429_at_once():
    spec = Service(latency=a_const(0.05), server=Server(concurrent_limit=1), retry=Retry(initial=0.2, jitter=0.0))
    svc = _Svc(spec)
    svc.state.enter()  # another request of the key is in flight
    clock = [0.0]
    steps = attempts(svc, 0, 0, -1, [0.05], 1, clock=lambda: clock[0], add=lambda *r: None, log=lambda *r: None)
    assert next(steps) == (SLEEP, pytest.approx(0.2), svc)  # refused without being served: back off
    svc.state.leave()  # the other request is answered meanwhile
    clock[0] = 0.2
    assert steps.send(None) == (SERVE, pytest.approx(0.05), svc)
    assert svc.state.state[0] == 1  # this one is in flight while served
    clock[0] = 0.25
    with pytest.raises(StopIteration):
        steps.send(0.2)
    assert svc.state.state[0] == 0


def test_a_429_pauses_every_call_of_a_client_with_a_cooldown():
    spec = Service(latency=a_const(0.05), rate_limit=RateLimit(rpm=60, burst_requests=1),
                   retry=CLIENT_PROFILES["openai-cookbook-processor"].retry)  # its rules, without its dispatcher
    svc = _Svc(spec)
    svc.server[0].take(0.0, 1.0)  # the bucket is empty: the first attempt gets a 429 and the client pauses 15 s
    commands, _, log = [], [], []
    clock = [0.0]
    steps = attempts(svc, 0, 0, -1, [0.05], 1, clock=lambda: clock[0], add=lambda *r: None,
                     log=lambda *r: log.append(r))
    what = next(steps)
    while True:
        commands.append((what[0], round(what[1], 9)))
        clock[0] += what[1]
        try:
            what = steps.send(clock[0] - what[1] if what[0] == SERVE else None)
        except StopIteration:
            break
    assert commands == [(SLEEP, 15.0), (SERVE, 0.05)]  # no back-off of its own: the pause, then a retry
    assert [row[4] for row in log] == [RATE_LIMITED, OK]
    assert svc.state.paused_until == 15.0  # another call asking now would wait for it too


def test_a_machine_profile_gives_a_named_clients_measured_cpu_to_its_services():
    from asyncsim.profile import LoopProfile, MachineProfile

    loop = LoopProfile(loop_step_s=0.0, sleep_overshoot_s=0.0, task_create_s=0.0, timer_floor_s=1e-3)
    profile = MachineProfile(cpu_rate=1e7, loops={"asyncio": loop}, thread_sleep_overshoot_s=0.0,
                             thread_switch_s=0.0, process_dispatch_s=0.0, client_cpu_s={"openai": 0.002})
    import asyncsim as a

    w = a.Workload(arrivals=a.Batch(count=1), task=(a.call("llm"),), services={
        "llm": Service(latency=a_const(0.1), client="openai-python"),
        "own": Service(latency=a_const(0.1), client="openai-python-1", client_cpu={"before": 0.01}),
        "tenacity": Service(latency=a_const(0.1), client="tenacity-random-exponential"),
        "plain": Service(latency=a_const(0.1))})
    services = profile.with_clients(w).services
    assert (services["llm"].client_cpu.before, services["llm"].client_cpu.after) == (0.001, 0.001)
    assert services["own"].client_cpu.before == 0.01  # what the model says wins
    assert services["tenacity"].client_cpu is None  # tenacity wraps whatever client the user calls
    assert services["plain"].client_cpu is None


def test_litellm_router_adds_its_jitter_and_reads_only_whole_second_retry_afters():
    """litellm 1.84's _calculate_retry_after: a whole-second retry-after in (0, 60] + 0.75 U; anything else (a
    fraction, which its int() parse refuses, or above 60 s) min(0.5 * 2^n, 8) + 0.75 U."""
    litellm = Service.model_validate({"latency": 0.1, "client": "litellm-router"}).retry
    assert litellm.attempts == 3
    assert backoff_s(litellm, 0, 0.5) == pytest.approx(0.5 + 0.375)
    assert backoff_s(litellm, 2, 0.0) == pytest.approx(2.0)
    assert backoff_s(litellm, 0, 0.5, retry_after=2.0) == pytest.approx(2.375)
    assert backoff_s(litellm, 1, 0.5, retry_after=1.5) == pytest.approx(1.0 + 0.375)  # not a whole number
    assert backoff_s(litellm, 1, 0.0, retry_after=90.0) == pytest.approx(1.0)  # above its window: back-off


def test_a_limiter_profile_brings_its_rules_and_composes_with_a_client():
    alone = Service.model_validate({"latency": 0.1, "client": "aiolimiter", "client_limit": {"rpm": 60,
                                                                                             "window": 10}})
    assert (alone.retry.policy, alone.client_limit.policy.kind) == ("none", "fifo")  # it retries nothing
    both = Service.model_validate({"latency": 0.1, "client": "openai-python+aiolimiter",
                                   "client_limit": {"rpm": 60, "window": 10}})
    openai = Service.model_validate({"latency": 0.1, "client": "openai-python"})
    assert both.retry == openai.retry
    with pytest.raises(ValueError, match=r"openai-python\+aiolimiter has a limiter of its own: give client_limit"):
        Service.model_validate({"latency": 0.1, "client": "openai-python+aiolimiter"})
    with pytest.raises(ValueError, match=r"unknown client profile 'aiolimit' .* or several joined by \+"):
        Service.model_validate({"latency": 0.1, "client": "openai-python+aiolimit"})
    # AsyncLimiter(10, 10): ten pass at once (it starts empty), then one a second as it leaks
    import asyncsim as a

    w = a.Workload(arrivals=a.Batch(count=12), task=(a.call("api"),), services={"api": alone})
    r = a.simulate(w, strategy="asyncio", seed=0)
    assert sorted(r.done.tolist()) == pytest.approx([0.1] * 10 + [1.1, 2.1])


def test_a_limiter_taken_per_call_does_not_hold_back_the_clients_own_retries():
    """Two calls take the limiter's two tokens (refilled at 0.1/s); the second is refused by the server (one a
    second) and retried after its 1 s retry-after. Around the call (aiolimiter's use) the retry goes at once;
    taken per attempt it waits 10 s for a token."""
    import asyncsim as a

    def done(per: str) -> list[float]:
        svc = Service.model_validate({"latency": 0.1, "client": "openai-python",
                                      "rate_limit": {"rpm": 60, "burst_requests": 1},
                                      "client_limit": {"rpm": 6, "window": 20, "per": per}})
        w = a.Workload(arrivals=a.Batch(count=2), task=(a.call("api"),), services={"api": svc})
        return sorted(a.simulate(w, strategy="asyncio", seed=0).done.tolist())

    assert done("call") == pytest.approx([0.1, 1.1])
    assert done("attempt") == pytest.approx([0.1, 10.1])
    with pytest.raises(ValueError, match=r"rate_limit\.per: a server-side limit counts every attempt"):
        Service.model_validate({"latency": 0.1, "rate_limit": {"rpm": 60, "per": "call"}})


def test_a_client_limiters_turn_that_falls_a_hair_short_in_floating_point_still_wakes_its_waiters():
    """The cookbook processor's own limiter (one request per 5 ms turn) under threads:8: with these overheads the
    timer for a turn due at 0.005042004954812 s fired at 0.0050420049548119995 (now + (at - now) in floating point),
    which read as a stale timer and left 7 of 40 tasks waiting for good (a deadlock report). A superseded timer is
    now void by its number (sim/resources.py Alarm)."""
    import asyncsim as a
    from asyncsim.services import RateLimit

    w = a.Workload(name="dispatcher", arrivals=a.Batch(count=40), task=(a.call("api"),),
                   services={"api": Service(latency=a.Lognormal(mean=0.05, cv=0.3), client="openai-cookbook-processor",
                                            client_limit={"rpm": 6000, "interval": 0.005},
                                            retry={"cooldown": 0.25, "max_retries": 10},
                                            rate_limit=RateLimit(rpm=2400, burst_requests=4))})
    m = a.Machine(cores=2, thread_switch_s=4.0013997931964695e-05, thread_switch_idle_s=0.00015010000061010942,
                  thread_idle_after_s=0.001, thread_start_s=4.200495481200051e-05,
                  thread_turnaround_s=3.962995833717287e-06, core_balance_s=0.012,
                  sleep_overshoot_s=0.0001062964994343928, cpu_jitter_cv=0.017702257162413772)
    r = a.simulate(w, strategy="threads:8", machine=m, seed=0)
    assert r.completed == 40
