"""Pipelines in the simulator: throughput set by the slowest stage, backpressure, batching, the end-of-input
flush, per-stage metrics that add up, and clear errors for bad stage values."""

from __future__ import annotations

import numpy as np
import pytest

import asyncsim as a
from asyncsim.trace import K_CPU, K_STAGE


def pipeline(stages: dict, *, arrivals: dict | None = None, services: dict | None = None,
             strategy: str = "asyncio") -> a.Workload:
    return a.Workload.from_dict({"name": "pipe", "arrivals": arrivals or {"batch": 200}, "stages": stages,
                                 "services": services or {}, "strategy": strategy})


def io_stage(seconds: float, **spec) -> dict:
    return {"steps": [{"io": seconds}], **spec}


def test_throughput_is_the_slowest_stages_capacity():
    # capacities 100/s, 40/s and 80/s: the middle stage sets the pace and is named the bottleneck
    n = 2000
    w = pipeline({"a": io_stage(0.01), "b": io_stage(0.025), "c": io_stage(0.0125)}, arrivals={"batch": n})
    r = a.simulate(w)
    assert r.completed == n
    assert r.throughput == pytest.approx(40, rel=0.02)
    assert r.bottleneck == "b"
    assert r.stages["b"]["utilization"] == pytest.approx(1.0, rel=0.01)
    assert r.stages["a"]["utilization"] < 0.5
    assert r.stages["c"]["utilization"] < 0.9


def test_more_workers_move_the_bottleneck():
    w = pipeline({"a": io_stage(0.01), "b": io_stage(0.025, workers=4), "c": io_stage(0.0125)},
                 arrivals={"batch": 1000})
    r = a.simulate(w)
    assert r.throughput == pytest.approx(80, rel=0.02)
    assert r.bottleneck == "c"


def _queued_max(r: a.Result, stage: str) -> int:
    q = r.queue_series()
    return int(q[q.stage == stage].queued.max())


def test_a_full_bounded_queue_blocks_its_producer():
    n = 100
    stages = {"produce": io_stage(0.01), "consume": io_stage(0.03)}
    free = a.simulate(pipeline(stages, arrivals={"batch": n}))
    bounded = a.simulate(pipeline({**stages, "consume": io_stage(0.03, queue=1)}, arrivals={"batch": n}))
    # the consumer sets the pace either way
    assert bounded.t_total == pytest.approx(free.t_total, rel=1e-9)
    # unbounded, the producer runs ahead and items pile up before the consumer ...
    assert _queued_max(free, "consume") > n / 2
    # ... bounded, at most one waits in the queue and one more is held by the blocked producer
    assert _queued_max(bounded, "consume") <= 2
    # so the producer's own items wait longer for it (its worker is blocked on put)
    assert bounded.stages["produce"]["mean_wait"] > 2 * free.stages["produce"]["mean_wait"]
    assert bounded.stages["consume"]["mean_wait"] < free.stages["consume"]["mean_wait"] / 10


def test_the_loop_runs_one_coroutine_at_a_time_when_puts_block():
    # a batch of 4 items put into a queue of 1 blocks several times in a row; the worker must not release
    # the loop it no longer holds (that let two coroutines compute at once)
    w = pipeline({"parse": {"steps": [{"cpu": 0.001}], "batch": 4, "workers": 2},
                  "embed": {"steps": [{"cpu": 0.004}], "queue": 1, "workers": 3}}, arrivals={"batch": 40})
    r = a.simulate(w)
    tr = r.trace
    on_loop = (tr.kind == K_CPU) & (tr.resource == tr.resources.index("loop"))
    order = np.argsort(tr.start[on_loop])
    start, end = tr.start[on_loop][order], tr.end[on_loop][order]
    assert np.all(start[1:] >= end[:-1] - 1e-12)
    assert r.t_total >= 40 * 0.005 - 1e-9


def test_a_batched_stage_under_saturation_runs_full_batches():
    services = {"embedder": {"latency": 0.05, "per_item": 0.001, "concurrency": 2}}
    for max_wait in (None, 0.01):
        embed = {"steps": [{"call": "embedder"}], "batch": 8, "workers": 2, "queue": 16}
        if max_wait is not None:
            embed["max_wait"] = max_wait
        r = a.simulate(pipeline({"parse": io_stage(0.001, workers=2), "embed": embed},
                                arrivals={"batch": 800}, services=services))
        assert r.stages["embed"]["batch_size_mean"] == 8.0
        assert r.stages["embed"]["batches"] == 100
        assert r.services["embedder"]["batch_size_mean"] == pytest.approx(8.0)
        # two slots, each serving a batch of 8 in 0.05 + 8 × 0.001 s
        assert r.throughput == pytest.approx(2 * 8 / 0.058, rel=0.02)


def test_max_wait_with_a_slow_trickle_runs_batches_of_one():
    w = pipeline({"embed": io_stage(0.005, batch=8, max_wait=0.01)},
                 arrivals={"uniform": {"interval": 0.1, "count": 20}})
    r = a.simulate(w)
    assert r.stages["embed"]["batch_size_mean"] == 1.0
    assert r.stages["embed"]["batches"] == 20
    # each item waits out max_wait for company, then runs alone; the last one need not: no more can come
    latency = r.done - r.arrival
    assert latency[:-1] == pytest.approx(np.full(19, 0.015))
    assert latency[-1] == pytest.approx(0.005)


def test_the_end_of_input_flushes_a_partial_batch():
    # batch larger than the items, max_wait unset: the batch runs once no more items can come
    r = a.simulate(pipeline({"embed": io_stage(0.02, batch=16)}, arrivals={"batch": 5}))
    assert r.completed == 5
    assert r.stages["embed"]["batches"] == 1
    assert r.t_total == pytest.approx(0.02)
    # items arriving over time: full batches, then the rest when the input ends
    r = a.simulate(pipeline({"parse": io_stage(0.01), "embed": io_stage(0.005, batch=4)},
                            arrivals={"batch": 10}))
    assert r.completed == 10
    sizes = r.trace.cpu_s[(r.trace.kind == K_STAGE) & (r.trace.resource == r.trace.resources.index("stage:embed"))]
    assert sorted(sizes.tolist()) == [2.0, 4.0, 4.0]


def test_items_failing_upstream_still_let_a_batch_flush():
    services = {"flaky": {"latency": 0.01, "failures": {"server_error": 0.5}, "retry": {"policy": "none"}}}
    w = pipeline({"check": {"steps": [{"call": "flaky"}], "workers": 4}, "embed": io_stage(0.01, batch=64)},
                 arrivals={"batch": 40}, services=services)
    r = a.simulate(w)
    assert 0 < r.failed < 40
    assert r.completed + r.failed == 40
    assert r.stages["check"]["items"] == 40
    assert r.stages["embed"]["items"] == r.completed


def test_per_stage_metrics_add_up():
    services = {"api": {"latency": {"exponential": {"mean": 0.02}}, "per_item": 0.002, "concurrency": 3}}
    w = pipeline({"parse": {"steps": [{"cpu": 0.001}], "queue": 3},
                  "embed": {"steps": [{"call": "api"}], "batch": 5, "max_wait": 0.01, "workers": 2, "queue": 4},
                  "upsert": io_stage(0.004, workers=2, queue=2)},
                 arrivals={"poisson": {"rate": 150, "count": 300}}, services=services)
    r = a.simulate(w, seed=3)
    assert r.completed == 300
    for stage in r.stages.values():
        assert stage["items"] == r.completed
        assert stage["throughput"] == pytest.approx(r.throughput)
        assert stage["batch_size_mean"] == pytest.approx(stage["items"] / stage["batches"])
        assert 0 < stage["utilization"] <= 1
    assert 1 < r.stages["embed"]["batch_size_mean"] <= 5
    # each moment of an item is in one state: the split still adds up to the latency
    assert sum(r.time_split.values()) == pytest.approx(r.latency["mean"], rel=1e-9)


def test_a_cpu_stage_that_never_waits_starves_the_loop_unless_offloaded():
    stages = {"parse": {"steps": [{"cpu": 0.004}], "workers": 4}, "upsert": io_stage(0.002, workers=4)}
    on_loop = a.simulate(pipeline(stages), strategy="asyncio")
    # a parse worker always finds an item and never blocks on put, so it keeps the loop (as in asyncio):
    # upsert runs only after all 200 items are parsed, 4 at a time
    assert on_loop.t_total == pytest.approx(200 * 0.004 + 50 * 0.002)
    offloaded = a.simulate(pipeline(stages), strategy="asyncio+processes:2")
    assert offloaded.throughput == pytest.approx(500, rel=0.02)  # two cores, upsert overlapping


def test_an_admission_limit_caps_items_in_the_pipeline():
    r = a.simulate(pipeline({"a": io_stage(0.01, workers=8), "b": io_stage(0.01, workers=8)}),
                   strategy="asyncio:3")
    assert r.resources["limit"]["mean_busy"] == pytest.approx(3, rel=0.01)
    assert r.throughput == pytest.approx(3 / 0.02, rel=0.02)


def test_an_admission_limit_below_what_partial_batches_hold_deadlocks_clearly():
    # 3 items allowed in, a stage waiting for 4 without max_wait: a real program hangs; the simulator says so
    w = pipeline({"embed": io_stage(0.01, batch=4)}, arrivals={"batch": 10})
    with pytest.raises(a.SimulationError, match="deadlock"):
        a.simulate(w, strategy="asyncio:3")


@pytest.mark.parametrize(("stage", "problem"), [
    ({"steps": [{"io": 0.01}], "queue": 0}, "stages.embed.queue: must be >= 1 (got 0)"),
    ({"steps": [{"io": 0.01}], "batch": 0}, "stages.embed.batch: must be >= 1 (got 0)"),
    ({"steps": [{"io": 0.01}], "workers": 0}, "stages.embed.workers: must be >= 1 (got 0)"),
    ({"steps": [{"io": 0.01}], "max_wait": -1}, "stages.embed.max_wait: must be >= 0 (got -1)"),
    ({"steps": [{"call": "nope"}]}, "stages.embed.steps[0].call: unknown service 'nope' (none are defined)"),
    ({"steps": []}, "stages.embed.steps: needs at least 1 item(s)"),
])
def test_bad_stage_values_name_their_yaml_path(stage, problem):
    with pytest.raises(a.ModelError) as info:
        a.Workload.from_dict({"arrivals": {"batch": 3}, "stages": {"embed": stage}})
    assert info.value.problems == [problem]


def test_a_pipeline_needs_an_asyncio_strategy():
    allowed = "use asyncio, asyncio:K (at most K items in the pipeline), asyncio+threads:N or asyncio+processes:N"
    with pytest.raises(a.ModelError) as info:
        pipeline({"embed": io_stage(0.01)}, strategy="threads:4")
    assert info.value.problems == [f"strategy: a pipeline runs its stage workers as asyncio coroutines; {allowed} "
                                   "(got threads:4)"]
    w = pipeline({"embed": io_stage(0.01)})
    with pytest.raises(a.ModelError, match=r"^strategy: .*\(got processes:2\)"):
        a.build_scenario(w, strategy="processes:2")
