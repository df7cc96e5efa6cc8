"""Semantics of the AI building blocks in the simulator: rate limits, retries, failures, token latency,
dynamic batching, pool timeouts, and the binding-limit bounds (deterministic, fixed seeds)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import asyncsim as a
from asyncsim.bounds import bounds
from asyncsim.plan import parse_slo, parse_vary, plan
from asyncsim.scenario import build_scenario
from asyncsim.services import CLIENT_PROFILES
from asyncsim.trace import ResourceId


def llm(service: dict, *, n: int = 200, strategy: str = "asyncio", **extra) -> a.Workload:
    """n calls to one service `llm`, all arriving at t = 0."""
    return a.Workload.from_dict({"name": "llm", "arrivals": {"batch": n}, "task": [{"call": "llm"}],
                                 "services": {"llm": service}, "strategy": strategy, **extra})


# ------------------------------------------------------------------------------------------ rate limits


@pytest.mark.parametrize("strategy", ["asyncio", "asyncio:50", "threads:64"])
def test_a_client_limited_batch_finishes_no_sooner_than_n_over_rpm(strategy):
    # 600 RPM with a one-second window: a burst of 10, then 10 per second
    w = llm({"latency": 0.5, "client_limit": {"rpm": 600, "window": 1}}, n=200, strategy=strategy)
    r = a.simulate(w, seed=1)
    assert r.completed == 200
    floor = (200 - 10) / 10
    assert r.t_total >= floor
    # the limiter, not the client, is what binds: the last request leaves at the floor, then takes 0.5 s
    assert r.t_total == pytest.approx(floor + 0.5, rel=1e-9)
    assert r.time_split.throttled > 0
    assert bounds(build_scenario(w, seed=1))[0].name == "service llm rpm (client)"


def test_tokens_per_minute_bind_when_requests_are_large():
    w = llm({"latency": 0.2, "tokens": {"input": 900, "output": 100},
             "client_limit": {"rpm": 10_000, "tpm": 60_000, "window": 1}}, n=100)
    r = a.simulate(w, seed=0)
    tokens = 100 * 1000
    floor = (tokens - 1000) / 1000  # 1,000 tokens a second after a one-second burst
    assert r.t_total == pytest.approx(floor + 0.2, rel=1e-9)
    assert r.services["llm"].tokens == tokens
    top = bounds(build_scenario(w, seed=0))[0]
    assert top.name == "service llm tpm (client)"
    assert top.seconds == pytest.approx(floor)


def test_count_max_tokens_charges_the_reservation_not_the_answer():
    service = {"latency": 0.1, "tokens": {"input": 100, "output": 50, "max_tokens": 400},
               "client_limit": {"tpm": 30_000, "window": 1}}
    spare = a.simulate(llm(service, n=50), seed=0).t_total
    service["client_limit"]["count_max_tokens"] = True
    reserved = a.simulate(llm(service, n=50), seed=0).t_total
    # 150 vs 500 tokens charged per request at 500 tokens/s
    assert spare == pytest.approx((50 * 150 - 500) / 500 + 0.1)
    assert reserved == pytest.approx((50 * 500 - 500) / 500 + 0.1)


def test_server_rate_limit_answers_429_and_jittered_retries_get_through():
    w = llm({"latency": 0.5, "rate_limit": {"rpm": 600, "window": 1},
             "retry": {"policy": "full_jitter", "max_retries": 50, "initial": 1, "max_delay": 20,
                       "honor_retry_after": False}}, n=100)
    r = a.simulate(w, seed=3)
    s = r.services["llm"]
    assert r.completed == 100
    assert s.rate_limited > 0
    assert s.retries == s.rate_limited  # every 429 was retried
    assert s.requests == s.ok + s.rate_limited
    # the server admits at most burst + rate·t requests by time t
    floor = (100 - 10) / 10
    assert r.t_total >= floor
    assert r.resources[ResourceId("backoff", "llm")].mean_wait > 0


def test_an_exact_retry_after_makes_rejected_clients_retry_together():
    # every rejected client is told the same retry-after (when the next token is due): one gets through per round
    herd = llm({"latency": 0.5, "rate_limit": {"rpm": 600, "window": 1}, "retry": {"max_retries": 20}}, n=100)
    r = a.simulate(herd, seed=3)
    assert r.completed == 10 + 20  # the burst, then one per retry round
    assert r.services["llm"].rate_limited > 20 * 60


def test_without_retries_a_rate_limited_burst_fails_what_exceeds_the_burst():
    w = llm({"latency": 0.5, "rate_limit": {"rpm": 600, "window": 1}, "retry": {"policy": "none"}}, n=100)
    r = a.simulate(w, seed=0)
    assert (r.completed, r.failed) == (10, 90)
    assert r.services["llm"].failed == 90


# ------------------------------------------------------------------------------------- retries, failures


@pytest.mark.parametrize("p", [0.1, 0.3])
def test_retries_with_a_known_failure_probability_give_the_expected_attempts(p):
    retries = 3
    n = 4000
    w = llm({"latency": 0.01, "failures": {"server_error": p}, "retry": {"max_retries": retries}}, n=n)
    r = a.simulate(w, seed=11)
    s = r.services["llm"]
    expected_attempts = sum(p**k for k in range(retries + 1))  # attempt k+1 happens when k attempts failed
    sd = math.sqrt(n * expected_attempts)  # generous: attempts per call vary by less than a Poisson count
    assert s.requests == pytest.approx(n * expected_attempts, abs=4 * sd)
    assert s.failed == pytest.approx(n * p ** (retries + 1), abs=4 * math.sqrt(n * p ** (retries + 1)) + 1)
    assert r.failed == s.failed
    assert s.server_error == s.requests - s.ok


def test_backoff_follows_the_openai_client_schedule():
    # every attempt fails: the waits are min(0.5·2^n, 8)·(1 − 0.25·U) for n = 0, 1
    w = llm({"latency": 0.0, "failures": {"server_error": 1.0}}, n=1)
    r = a.simulate(w, seed=0)
    assert r.failed == 1
    sc = build_scenario(w, seed=0)
    node = sc.programs[0].steps[0]
    durs = sc.durations[0][0]
    u = [durs[node.col + 2 + 3 * k + 2] for k in range(3)]
    waits = [0.5 * (1 - 0.25 * u[0]), 1.0 * (1 - 0.25 * u[1])]
    assert r.resources[ResourceId("backoff", "llm")].mean_wait == pytest.approx(sum(waits))
    assert r.services["llm"].requests == 3


def test_timeouts_cut_slow_attempts_and_waste_their_tokens():
    w = llm({"latency": {"lognormal": {"mean": 1.0, "cv": 1.0}}, "timeout": 2.0, "tokens": {"input": 10, "output": 5},
             "retry": {"policy": "none"}}, n=2000)
    r = a.simulate(w, seed=5)
    s = r.services["llm"]
    sc = build_scenario(w, seed=5)
    slow = int((sc.durations[0][:, 0] > 2.0).sum())
    assert s.timeout == slow == r.failed
    assert s.tokens_wasted == 15 * slow
    assert r.latency.max <= 2.0 + 1e-9


def test_token_based_latency_is_ttft_plus_tpot_per_output_token():
    w = llm({"ttft": 0.3, "tpot": 0.02, "tokens": {"input": 100, "output": {"lognormal": {"mean": 200, "cv": 0.5}}}},
            n=300)
    r = a.simulate(w, seed=2)
    out_tokens = build_scenario(w, seed=2).durations[0][:, 1 + 1]  # the call's block starts after its node column
    expected = 0.3 + 0.02 * np.maximum(out_tokens - 1, 0)
    np.testing.assert_allclose(np.sort(r.done - r.arrival), np.sort(expected), rtol=1e-12)


# ------------------------------------------------------------------------------------ batching and pools


def test_a_dynamic_batcher_under_saturation_reaches_its_max_batch():
    w = llm({"batching": {"max_batch": 16, "max_delay": 0.002, "fixed": 0.01, "per_item": 0.001}}, n=1600)
    r = a.simulate(w, seed=0)
    s = r.services["llm"]
    assert s.batch_size_max == 16
    assert s.batch_size_mean == pytest.approx(16, rel=0.01)
    # 100 full batches of 26 ms on one instance
    assert r.t_total == pytest.approx(100 * (0.01 + 0.016), rel=1e-9)


def test_a_batcher_at_light_load_runs_single_requests_after_max_delay():
    w = a.Workload.from_dict({
        "arrivals": {"uniform": {"interval": 1.0, "count": 20}}, "task": [{"call": "gpu"}],
        "services": {"gpu": {"batching": {"max_batch": 8, "max_delay": 0.05, "fixed": 0.01, "per_item": 0.001}}}})
    r = a.simulate(w, seed=0)
    assert r.latency.max == pytest.approx(0.05 + 0.011)
    assert r.services["gpu"].batch_size_mean is None  # every batch had one request


def test_a_full_batch_queue_rejects_and_rejections_are_retried():
    service = {"batching": {"max_batch": 4, "fixed": 0.1, "max_queue": 8}, "retry": {"policy": "none"}}
    r = a.simulate(llm(service, n=40), seed=0)
    # the first request finds an idle instance and runs alone at once, eight wait, the rest are rejected
    assert r.services["llm"].rejected == 40 - 1 - 8
    assert r.failed == 40 - 9
    service["retry"] = {"max_retries": 20, "initial": 0.2}
    r2 = a.simulate(llm(service, n=40), seed=0)
    assert r2.completed == 40


def test_a_pool_timeout_fails_the_tasks_that_wait_too_long():
    w = a.Workload.from_dict({
        "arrivals": {"batch": 50}, "task": [{"use": {"pool": "http", "steps": [{"io": 1.0}]}}],
        "pools": {"http": {"capacity": 10, "timeout": 2.5}}})
    r = a.simulate(w, seed=0)
    # slots free at 1 s and 2 s; the tasks still waiting at 2.5 s fail (httpx PoolTimeout)
    assert (r.completed, r.failed) == (30, 20)
    assert r.resources[ResourceId("pool", "http")].capacity == 10


# -------------------------------------------------------------------------------------------- planning


def test_plan_finds_the_smallest_concurrency_that_reaches_n_over_rpm():
    # 1,200 RPM = 20/s; each call takes 1.5 s, so K in flight give K/1.5 per second: K = 30 reaches the limit
    raw = {"name": "llm", "arrivals": {"batch": 600}, "task": [{"call": "llm"}],
           "services": {"llm": {"latency": 1.5, "client_limit": {"rpm": 1200, "window": 1}}}, "strategy": "asyncio"}
    floor = (600 - 20) / 20 + 1.5
    result = plan(raw, vary=parse_vary("strategy=asyncio:1..512"), slos=[parse_slo(f"t_total <= {floor + 0.01}")],
                  replications=1)
    assert (result.answer, result.value) == (30, "asyncio:30")


# ------------------------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(("service", "problem"), [
    ({"latency": 1, "rate_limit": {"rpm": -5}}, "services.llm.rate_limit.rpm: must be > 0 (got -5)"),
    ({"latency": 1, "rate_limit": {}}, "services.llm.rate_limit: give rpm, tpm or both"),
    ({"batching": {"max_batch": 0}}, "services.llm.batching.max_batch: must be >= 1 (got 0)"),
    ({"latency": 1, "failures": {"server_error": 1.5}}, "services.llm.failures.server_error: must be <= 1"),
    ({"latency": 1, "failures": {"timeout": 0.1}}, "services.llm: failures.timeout needs timeout"),
    ({"latency": 1, "retry": {"policy": "sometimes"}}, "services.llm.retry.policy:"),
    ({"latency": 1, "client_limit": {"tpm": 1000}}, "services.llm: client_limit.tpm counts tokens"),
    ({"ttft": 0.2}, "services.llm: token-based latency needs both ttft and tpot"),
    ({"latency": 1, "ttft": 0.2, "tpot": 0.01}, "services.llm: give exactly one latency form"),
    ({"latency": 1, "retry": {"max_retries": 1000}}, "services.llm.retry.max_retries: must be <= 100"),
])
def test_bad_service_values_are_clear_errors(service, problem):
    with pytest.raises(a.ModelError) as exc:
        llm(service)
    assert any(p.startswith(problem) for p in exc.value.problems), exc.value.problems


def test_unknown_service_and_bad_pool_timeout_are_clear_errors():
    with pytest.raises(a.ModelError) as exc:
        a.Workload.from_dict({"arrivals": {"batch": 1}, "task": [{"call": "nope"}]})
    assert exc.value.problems == ["task[0].call: unknown service 'nope' (none are defined)"]
    with pytest.raises(a.ModelError) as exc:
        a.Workload.from_dict({"arrivals": {"batch": 1}, "task": [{"io": 1}], "pools": {"db": {"capacity": 2,
                                                                                               "timeout": 0}}})
    assert exc.value.problems == ["pools.db.timeout: must be > 0 (got 0)"]


def test_a_call_may_size_its_requests_differently_from_the_service_default():
    raw = {"arrivals": {"batch": 100}, "tasks": [
        {"name": "chat", "weight": 1, "steps": [{"call": {"service": "llm", "tokens": {"input": 200, "output": 50}}}]},
        {"name": "summary", "weight": 1, "steps": [{"call": "llm"}]}],
        "services": {"llm": {"ttft": 0.2, "tpot": 0.01, "tokens": {"input": 4000, "output": 400, "max_tokens": 300},
                             "client_limit": {"tpm": 600_000, "window": 1}}}}
    w = a.Workload.from_dict(raw)
    r = a.simulate(w, seed=0)
    chat, summary = (r.task_type == 0), (r.task_type == 1)
    np.testing.assert_allclose((r.done - r.arrival)[chat].min(), 0.2 + 0.01 * 49)
    assert r.services["llm"].tokens == chat.sum() * 250 + summary.sum() * (4000 + 300)  # output capped at 300
    with pytest.raises(a.ModelError) as exc:
        a.Workload.from_dict({**raw, "tasks": [{"steps": [{"call": {"service": "llm", "tokens": {"max_tokens": 9}}}]}]})
    assert exc.value.problems == ["tasks[0].steps[0].call: tokens.max_tokens belongs to the service (set it under "
                                  "services)"]


# ------------------------------------------------------------------- server behaviours, client profiles


@pytest.mark.parametrize(("mode", "second_done", "rate_limited"), [
    ("exact", 0.6, 1),  # retry-after 0.5 s: the bucket's exact refill
    ("ceil_seconds", 1.1, 1),  # the header in whole seconds: 1 s
    ("none", 1.0, 2),  # no header: the client's own back-off, 0.3 s (too early: a second 429), then 0.6 s
    (2.0, 2.1, 1),  # a fixed retry-after of 2 s
])
def test_a_servers_retry_after_mode_decides_when_a_rejected_client_comes_back(mode, second_done, rate_limited):
    svc = a.Service(latency=0.1, rate_limit=a.RateLimit(rpm=120, burst_requests=1),
                    server=a.Server(retry_after=mode), retry=a.Retry(initial=0.3, jitter=0.0))
    w = a.Workload(arrivals=a.Batch(count=2), task=(a.call("api"),), services={"api": svc})
    r = a.simulate(w, strategy="asyncio", seed=0)
    assert sorted(r.done.tolist()) == pytest.approx([0.1, second_done])
    assert r.services["api"].rate_limited == rate_limited


def test_a_concurrency_cap_answers_429_to_what_exceeds_it():
    """10 calls of 1 s at once, 4 allowed in flight; retries after 0.5 s, doubling, without jitter: 6 refused at
    0 and again at 0.5, 2 at 1.5 (4 got in), none at 3.5."""
    svc = a.Service(latency=1.0, server=a.Server(concurrent_limit=4),
                    retry=a.Retry(initial=0.5, jitter=0.0, max_retries=3))
    w = a.Workload(arrivals=a.Batch(count=10), task=(a.call("api"),), services={"api": svc})
    r = a.simulate(w, strategy="asyncio", seed=0)
    assert sorted(r.done.tolist()) == pytest.approx([1.0] * 4 + [2.5] * 4 + [4.5] * 2)
    assert (r.services["api"].rate_limited, r.services["api"].failed) == (14, 0)


def test_a_client_wide_cooldown_holds_back_every_call_after_a_429():
    """The cookbook processor's rule, with a 1 s pause: the second call's 429 stops the third from being sent
    until the pause ends; at 1 s the bucket holds one request, so the third is refused once more."""
    rules = {**CLIENT_PROFILES["openai-cookbook-processor"].retry, "cooldown": 1.0}
    svc = a.Service(latency=0.05, rate_limit=a.RateLimit(rpm=120, burst_requests=1), retry=rules)
    w = a.Workload(arrivals=a.Batch(count=3), task=(a.call("api"),), services={"api": svc})
    r = a.simulate(w, strategy="asyncio", seed=0)
    assert sorted(r.done.tolist()) == pytest.approx([0.05, 1.05, 2.05])
    assert r.services["api"].rate_limited == 2
    throttled = r.trace.to_frame().query("kind == 'throttle'")
    assert set(throttled.resource) == {"backoff:api"}  # the pause is recorded as backing off


def test_the_cookbook_processor_dispatches_one_request_per_loop_turn_and_none_while_paused():
    """Its own limiter (600 RPM) sends one request per 1 ms turn: the server's burst of 3 takes the first three
    (0, 1, 2 ms); the fourth, at 3 ms, gets a 429 and the processor sends nothing for 1 s (its pause, shortened
    here). The refused request waits behind the two not yet sent; at 1.003 s and 1.004 s the server has refilled
    two (2/s), so the third after the pause (1.005 s) is refused and pauses it again until 2.005 s."""
    svc = a.Service(latency=0.05, rate_limit=a.RateLimit(rpm=120, burst_requests=3),
                    client="openai-cookbook-processor", client_limit={"rpm": 600}, retry={"cooldown": 1.0})
    w = a.Workload(arrivals=a.Batch(count=6), task=(a.call("api"),), services={"api": svc})
    r = a.simulate(w, strategy="asyncio", seed=0)
    assert r.done.tolist() == pytest.approx([0.05, 0.051, 0.052, 2.055, 1.053, 1.054])
    assert r.services["api"].rate_limited == 2
    throttled = r.trace.to_frame().query("kind == 'throttle'")
    assert set(throttled.resource) == {"limiter:api"}  # its dispatcher holds the requests back, pause included
    dispatch = [b for b in bounds(build_scenario(w, strategy="asyncio", seed=0)) if "dispatch" in b.name]  # 6 sends
    assert [b.seconds for b in dispatch] == pytest.approx([0.005])


def test_a_clients_own_cpu_per_request_runs_on_the_loop_and_is_never_offloaded():
    """64 calls of 100 ms at once, the client spending 1.4 ms before and after each on the loop (the openai
    package measured here): the 64 sends take 89.6 ms of loop time, the first answer arrives at 101.4 ms and
    the 64 answers' CPU runs back to back to 191 ms. An executor does not take it: the client runs on the loop."""
    svc = a.Service(latency=0.1, client_cpu={"before": 0.0014, "after": 0.0014})
    w = a.Workload(arrivals=a.Batch(count=64), task=(a.call("api"),), services={"api": svc})
    for strategy in ("asyncio", "asyncio+threads:2"):
        r = a.simulate(w, strategy=strategy, seed=0)
        # answers arrive 1.4 ms apart from 101.4 ms, as fast as their CPU runs: the last ends at 101.4 + 64 x 1.4
        assert r.t_total == pytest.approx(0.1 + 0.0014 + 0.0014 * 64)
        cpu = r.trace.to_frame().query("kind == 'cpu'")
        assert len(cpu) == 128
        assert set(cpu.resource) == {"loop"}


def test_opening_a_connection_costs_connect_once_per_connection():
    """6 calls of 1 s through 2 connections that take 0.5 s to open: the first two open them (done at 1.5),
    the others reuse them (2.5, 2.5, 3.5, 3.5); with no pool each of the 6 opens its own."""
    pooled = a.Workload(arrivals=a.Batch(count=6), task=(a.call("api"),),
                        services={"api": a.Service(latency=1.0, connections=2, connect=0.5)})
    for strategy in ("asyncio", "threads:6", "processes:3"):
        r = a.simulate(pooled, strategy=strategy, seed=0)
        assert sorted(r.done.tolist()) == pytest.approx([1.5, 1.5, 2.5, 2.5, 3.5, 3.5]), strategy
    unpooled = pooled.evolve(services={"api": a.Service(latency=1.0, connect=0.5)})
    assert a.simulate(unpooled, seed=0).done.tolist() == pytest.approx([1.5] * 6)
    # one after another, one connection serves them all
    serial = a.simulate(pooled, strategy="sequential", seed=0)
    assert serial.done.tolist() == pytest.approx([1.5, 2.5, 3.5, 4.5, 5.5, 6.5])


def test_the_clients_connection_pool_holds_a_connection_per_attempt():
    """4 calls of 1 s at once through 2 connections: two wait a second for one, as queueing."""
    w = a.Workload(arrivals=a.Batch(count=4), task=(a.call("api"),),
                   services={"api": a.Service(latency=1.0, connections=2)})
    for strategy in ("asyncio", "threads:4", "processes:4"):
        r = a.simulate(w, strategy=strategy, seed=0)
        assert sorted(r.done.tolist()) == pytest.approx([1.0, 1.0, 2.0, 2.0]), strategy
        assert sorted(r.to_frame().queued.tolist()) == pytest.approx([0.0, 0.0, 1.0, 1.0]), strategy
