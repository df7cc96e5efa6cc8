"""The AI-pipeline building blocks, predicted against real runs of the same draws.

Each case runs a service element for real (client limiter by requests and by tokens, a server rate limit
answering 429 with an exact or a whole-second retry-after, a cap on requests in flight answering 429, a
client-wide pause after a 429, the client's connection pool, the client's CPU per request, random 5xx with
exponential back-off, timeouts, token-based latency, a dynamic batcher under saturation, a pool whose
timeout fires) under asyncio, threads and processes. Bar: as
in test_suite (replayed T_total within 5%, mean concurrency within 10%), and the call log agrees: requests,
failures by kind, retries and failed tasks are equal — they follow from the draws — except where the
outcome depends on timing at a bucket's edge (KNOWN_COUNT_LIMITS, with the measured spread).
"""

from __future__ import annotations

import numpy as np
import pytest

import asyncsim as a
from asyncsim.services import CLIENT_PROFILES, OUTCOMES, Batching, Failures, RateLimit, Retry, Server, Service, Tokens

from .conftest import validated

pytestmark = pytest.mark.validation


def client_rpm() -> a.Workload:
    """60 calls through a client limiter of 20 requests/s (burst 20): T_total ≈ (60 − 20) / 20 s."""
    return a.Workload(name="client-rpm", arrivals=a.Batch(count=60), task=(a.cpu(0.001), a.call("api")),
                      services={"api": Service(latency=a.Exponential(0.03), client_limit=RateLimit(rpm=1200,
                                                                                                   window=1))})


def client_tpm() -> a.Workload:
    """30 calls of ~250 tokens through a client limiter of 2,000 tokens/s (burst 2,000)."""
    return a.Workload(name="client-tpm", arrivals=a.Batch(count=30), task=(a.call("llm"),),
                      services={"llm": Service(latency=a.Exponential(0.03),
                                               tokens=Tokens(input=a.Lognormal(mean=200, cv=0.5),
                                                             output=a.Constant(50.0)),
                                               client_limit=RateLimit(tpm=120_000, window=1))})


def server_limit() -> a.Workload:
    """Poisson arrivals above a server's limit of 40 requests/s (burst 5): 429s with retry-after, retried."""
    return a.Workload(name="server-429", arrivals=a.Poisson(rate=60, count=60), task=(a.call("api"),),
                      services={"api": Service(latency=a.Exponential(0.02),
                                               rate_limit=RateLimit(rpm=2400, burst_requests=5),
                                               retry=Retry(max_retries=8))})


def server_ceil() -> a.Workload:
    """A server limit of 20 requests/s (burst 2) that sends retry-after in whole seconds (most providers do):
    the rejected calls come back a second later, all together."""
    return a.Workload(name="server-ceil", arrivals=a.Poisson(rate=40, count=40), task=(a.call("api"),),
                      services={"api": Service(latency=a.Exponential(0.02),
                                               rate_limit=RateLimit(rpm=1200, burst_requests=2),
                                               server=Server(retry_after="ceil_seconds"),
                                               retry=Retry(max_retries=8))})


def concurrency_cap() -> a.Workload:
    """40 calls at once to a key that allows 8 in flight (100 ms each) and refuses the rest with a 429 and a
    fixed retry-after of 50 ms."""
    return a.Workload(name="concurrency-cap", arrivals=a.Batch(count=40), task=(a.call("api"),),
                      services={"api": Service(latency=a.Lognormal(mean=0.1, cv=0.2),
                                               server=Server(concurrent_limit=8, retry_after=0.05),
                                               retry=Retry(max_retries=30))})


def cooldown() -> a.Workload:
    """The OpenAI cookbook processor's rule: after a 429 it sends nothing for a while (0.25 s here; 15 s in the
    script). Four calls in flight against a server limit of 40/s (burst 4): each round of four gets through,
    the next four are refused, and everyone waits out the pause."""
    return a.Workload(name="cooldown", arrivals=a.Batch(count=40), task=(a.call("api"),),
                      services={"api": Service(latency=a.Constant(0.02),
                                               rate_limit=RateLimit(rpm=2400, burst_requests=4),
                                               retry={**CLIENT_PROFILES["openai-cookbook-processor"].retry,
                                                      "cooldown": 0.25, "max_retries": 10})})


def dispatcher() -> a.Workload:
    """The cookbook processor whole: its own limiter (100/s) sends one request per 5 ms turn, nothing during
    its pause (0.25 s) after a 429, against a key of 40/s (burst 4)."""
    return a.Workload(name="dispatcher", arrivals=a.Batch(count=40), task=(a.call("api"),),
                      services={"api": Service(latency=a.Lognormal(mean=0.05, cv=0.3),
                                               client="openai-cookbook-processor",
                                               client_limit={"rpm": 6000, "interval": 0.005},
                                               retry={"cooldown": 0.25, "max_retries": 10},
                                               rate_limit=RateLimit(rpm=2400, burst_requests=4))})


def client_cpu() -> a.Workload:
    """64 calls at once whose client spends 1.4 ms of the loop's CPU before and after each (the openai package
    measured here): the loop, not the server, sets the pace."""
    return a.Workload(name="client-cpu", arrivals=a.Batch(count=64), task=(a.call("api"),),
                      services={"api": Service(latency=a.Lognormal(mean=0.1, cv=0.2),
                                               client_cpu={"before": 0.0014, "after": 0.0014})})


def connection_pool() -> a.Workload:
    """40 calls at once through the client's 8 connections (100 ms each): five waves."""
    return a.Workload(name="connection-pool", arrivals=a.Batch(count=40), task=(a.call("api"),),
                      services={"api": Service(latency=a.Lognormal(mean=0.1, cv=0.2), connections=8)})


def connecting() -> a.Workload:
    """The same pool whose connections take 30 ms to open: the first eight attempts open them, the rest reuse."""
    return a.Workload(name="connecting", arrivals=a.Batch(count=40), task=(a.call("api"),),
                      services={"api": Service(latency=a.Lognormal(mean=0.1, cv=0.2), connections=8, connect=0.03)})


def flaky() -> a.Workload:
    """20% 5xx answers retried with openai-python's exponential back-off (3 retries, from 20 ms)."""
    return a.Workload(name="5xx-backoff", arrivals=a.Batch(count=80), task=(a.cpu(0.001), a.call("api")),
                      services={"api": Service(latency=a.Lognormal(mean=0.03, cv=0.4), concurrency=10,
                                               failures=Failures(server_error=0.2),
                                               retry=Retry(max_retries=3, initial=0.02, max_delay=0.2))})


def timeouts() -> a.Workload:
    """Slow answers cut at the client's 60 ms timeout (and 5% that hang), retried with full jitter."""
    return a.Workload(name="timeouts", arrivals=a.Batch(count=60), task=(a.call("api"),),
                      services={"api": Service(latency=a.Lognormal(mean=0.04, cv=0.5), concurrency=8,
                                               timeout=0.06, failures=Failures(timeout=0.05),
                                               retry=Retry(policy="full_jitter", max_retries=2, initial=0.02))})


def token_latency() -> a.Workload:
    """An LLM endpoint: 30 ms to the first token, then 1 ms per output token (lognormal, mean 120)."""
    return a.Workload(name="token-latency", arrivals=a.Batch(count=48), task=(a.cpu(0.001), a.call("llm")),
                      services={"llm": Service(ttft=a.Constant(0.03), tpot=a.Constant(0.001), concurrency=6,
                                               tokens=Tokens(input=a.Constant(500.0),
                                                             output=a.Lognormal(mean=120, cv=0.6)))})


def batching_small() -> a.Workload:
    """As `batching` for 4 worker processes: batches of up to 4 (wait ≤ 20 ms), 20 ms + 5 ms/item."""
    return a.Workload(name="batching-4", arrivals=a.Poisson(rate=400, count=120), task=(a.cpu(0.0005), a.call("gpu")),
                      services={"gpu": Service(batching=Batching(max_batch=4, max_delay=0.02, fixed=0.02,
                                                                 per_item=0.005))})


def batching() -> a.Workload:
    """A GPU model server batching up to 8 (wait ≤ 5 ms, 10 ms + 2.5 ms/item) fed faster than it serves."""
    return a.Workload(name="batching", arrivals=a.Poisson(rate=400, count=240), task=(a.cpu(0.0005), a.call("gpu")),
                      services={"gpu": Service(batching=Batching(max_batch=8, max_delay=0.005, fixed=0.01,
                                                                 per_item=0.0025))})


def pool_timeout() -> a.Workload:
    """12 tasks at once for 4 connections held 200 ms each; a task that waits 300 ms for one fails (4 do).

    The margins are wide (100 ms either side) because a threading semaphore is not FIFO: which task gets a
    freed slot differs from the simulator's FIFO pool, but how many time out does not.
    """
    return a.Workload(name="pool-timeout", arrivals=a.Batch(count=12),
                      task=(a.use("db", [a.io(0.2)]),), pools={"db": a.Pool(capacity=4, timeout=0.3)})


# (workload, strategy, time scale): each real run ≤ ~2 s
CASES = [
    (client_rpm, "asyncio", 0.5), (client_rpm, "threads:16", 0.5), (client_rpm, "processes:4", 0.5),
    (client_tpm, "asyncio", 0.5), (client_tpm, "threads:8", 0.5),
    (server_limit, "asyncio", 1.0), (server_limit, "threads:16", 1.0),
    (server_ceil, "asyncio", 1.0), (concurrency_cap, "asyncio", 1.0), (concurrency_cap, "threads:16", 1.0),
    (cooldown, "asyncio:4", 1.0), (dispatcher, "asyncio", 1.0), (dispatcher, "threads:8", 1.0),
    (client_cpu, "asyncio", 1.0), (client_cpu, "asyncio:16", 1.0),
    (connection_pool, "asyncio", 1.0), (connection_pool, "threads:16", 1.0), (connection_pool, "processes:4", 1.0),
    (connecting, "asyncio", 1.0), (connecting, "threads:16", 1.0), (connecting, "processes:4", 1.0),
    (flaky, "asyncio", 1.0), (flaky, "asyncio:20", 1.0), (flaky, "threads:8", 1.0), (flaky, "processes:4", 1.0),
    (timeouts, "asyncio", 1.0), (timeouts, "threads:8", 1.0),
    (token_latency, "asyncio", 1.0), (token_latency, "threads:12", 1.0), (token_latency, "processes:4", 1.0),
    (batching, "asyncio", 1.0), (batching, "threads:32", 1.0), (batching_small, "processes:4", 1.0),
    (pool_timeout, "asyncio", 1.0), (pool_timeout, "threads:16", 1.0), (pool_timeout, "asyncio:20+threads:2", 1.0),
]

# Measured on this machine (2 cores, CPython 3.11, idle), over 2-3 runs each; each entry: the measured error
# range, and the (T_total, mean concurrency) bounds this test holds the case to.
KNOWN_LIMITS = {
    # retry-after is the exact time the bucket refills, so every retry lands on the bucket's edge: who wins is
    # decided by microseconds (timer overshoot), and the herd of 429s that follows differs; T_total is set by
    # the rate and agrees.
    ("server-429", "asyncio"): ("T_total -1% to +1%, concurrency +17% to +25% (model: longer 429 herds)",
                                0.05, 0.35),
    ("server-429", "threads:16"): ("T_total -2% to 0%, concurrency +10% to +28% (model: longer 429 herds)",
                                   0.05, 0.40),
    # every batch ends all 4 workers' tasks at once; the pool hands the next 4 tasks out one after another
    # (one call queue), the model in parallel
    ("batching-4", "processes:4"): ("T_total -7% to -11% (model too fast: serial dispatch to 4 processes)",
                                    0.15, 0.10),
}

# Where the call log cannot agree exactly: which attempt gets a 429 depends on whose request reaches the
# bucket first, at microsecond margins. Relative tolerance on requests and 429s, measured range in the text.
KNOWN_COUNT_LIMITS = {
    "server-429": ("requests -6% to -15%, 429s -8% to -19% (real fewer; measured over 4 runs)", 0.30),
    # a herd of retries 50 ms apart meets requests ending at the cap: one 429 fewer in every real run (3 of 3,
    # asyncio and threads:16), T_total within 2.3%
    "concurrency-cap": ("429s -1 of 189 (asyncio), -1 of 64 (threads:16), measured over 3 runs each", 0.10),
    # whole-second retry-afters and the cool-down: equal counts in 3 of 3 runs here, one off in a suite run
    "server-ceil": ("429s 0 to -1 of 23", 0.10),
    "cooldown": ("429s 0 of 9 over 3 runs", 0.10),
}


def counts(result) -> dict[str, int]:
    """Failed tasks, and from the call log: calls, requests (attempts) and attempts by outcome."""
    out = {"failed_tasks": result.failed}
    calls = result.calls
    if calls is not None:
        out.update(calls=int((calls.attempt == 0).sum()), requests=len(calls))
        out.update({name: int((calls.outcome == code).sum()) for code, name in enumerate(OUTCOMES)})
    return out


@pytest.mark.parametrize(("make", "strategy", "time_scale"), CASES,
                         ids=[f"{m.__name__}-{s}" for m, s, _ in CASES])
def test_service_prediction_matches_real_run(make, strategy, time_scale, profile):
    workload = make()
    known = KNOWN_LIMITS.get((workload.name, strategy))
    t_tol, c_tol = known[1:] if known else (0.05, 0.10)
    v = validated(workload, strategy, profile, time_scale=time_scale, t_total_tol=t_tol, concurrency_tol=c_tol)
    assert v.measured.tasks == workload.arrivals.count
    real, replay = counts(v.measured), counts(v.replayed)
    count_limit = KNOWN_COUNT_LIMITS.get(workload.name)
    if count_limit is None:
        assert real == replay
    else:
        tol = count_limit[1]
        assert real["calls"] == replay["calls"]
        for key in ("requests", "rate_limited", "failed_tasks"):  # within the tolerance, or 3
            assert abs(real[key] - replay[key]) <= max(3, tol * replay[key]), (key, real, replay)
    if workload.name.startswith("batching"):  # saturated: the batcher fills its batches, as predicted
        sizes = v.measured.calls.size
        assert sizes.max() == workload.services["gpu"].batching.max_batch
        assert np.mean(sizes) >= 0.8 * np.mean(v.replayed.calls.size)
    if workload.name == "pool-timeout":
        assert real["failed_tasks"] > 0
        assert all(e.startswith("PoolTimeout: no slot of pool 'db'") for e in (v.errors_by_task or {}).values())
