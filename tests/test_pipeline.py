"""Pipelines in the simulator: throughput set by the slowest stage, backpressure, batching, the end-of-input
flush, per-stage metrics that add up, and clear errors for bad stage values."""

from __future__ import annotations

import asyncio
import importlib

import numpy as np
import pytest

import asyncsim as a
from asyncsim.errors import DeadlockError
from asyncsim.profile import LoopProfile, MachineProfile
from asyncsim.sim import run_scenario
from asyncsim.trace import K_CPU, K_IO, K_STAGE, ResourceId

_IDEAL_PROFILE = MachineProfile(
    cpu_rate=1e7, loops={"asyncio": LoopProfile(loop_step_s=0, sleep_overshoot_s=0, task_create_s=0,
                                                timer_floor_s=1e-4)},
    thread_sleep_overshoot_s=0, thread_switch_s=0, process_dispatch_s=0)


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
    assert r.stages["b"].utilization == pytest.approx(1.0, rel=0.01)
    assert r.stages["a"].utilization < 0.5
    assert r.stages["c"].utilization < 0.9


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
    assert bounded.stages["produce"].mean_wait > 2 * free.stages["produce"].mean_wait
    assert bounded.stages["consume"].mean_wait < free.stages["consume"].mean_wait / 10


def test_the_loop_runs_one_coroutine_at_a_time_when_puts_block():
    # a batch of 4 items put into a queue of 1 blocks several times in a row; the worker must not release
    # the loop it no longer holds (that let two coroutines compute at once)
    w = pipeline({"parse": {"steps": [{"cpu": 0.001}], "batch": 4, "workers": 2},
                  "embed": {"steps": [{"cpu": 0.004}], "queue": 1, "workers": 3}}, arrivals={"batch": 40})
    r = a.simulate(w)
    tr = r.trace
    on_loop = (tr.kind == K_CPU) & (tr.resource == tr.code(ResourceId("loop")))
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
        assert r.stages["embed"].batch_size_mean == 8.0
        assert r.stages["embed"].batches == 100
        assert r.services["embedder"].batch_size_mean == pytest.approx(8.0)
        # two slots, each serving a batch of 8 in 0.05 + 8 × 0.001 s
        assert r.throughput == pytest.approx(2 * 8 / 0.058, rel=0.02)


def test_max_wait_with_a_slow_trickle_runs_batches_of_one():
    w = pipeline({"embed": io_stage(0.005, batch=8, max_wait=0.01)},
                 arrivals={"uniform": {"interval": 0.1, "count": 20}})
    r = a.simulate(w)
    assert r.stages["embed"].batch_size_mean == 1.0
    assert r.stages["embed"].batches == 20
    # each item waits out max_wait for company, then runs alone; the last one need not: no more can come
    latency = r.done - r.arrival
    assert latency[:-1] == pytest.approx(np.full(19, 0.015))
    assert latency[-1] == pytest.approx(0.005)


def test_the_end_of_input_flushes_a_partial_batch():
    # batch larger than the items, max_wait unset: the batch runs once no more items can come
    r = a.simulate(pipeline({"embed": io_stage(0.02, batch=16)}, arrivals={"batch": 5}))
    assert r.completed == 5
    assert r.stages["embed"].batches == 1
    assert r.t_total == pytest.approx(0.02)
    # items arriving over time: full batches, then the rest when the input ends
    r = a.simulate(pipeline({"parse": io_stage(0.01), "embed": io_stage(0.005, batch=4)},
                            arrivals={"batch": 10}))
    assert r.completed == 10
    sizes = r.trace.cpu_s[(r.trace.kind == K_STAGE) & (r.trace.resource == r.trace.code(ResourceId("stage", "embed")))]
    assert sorted(sizes.tolist()) == [2.0, 4.0, 4.0]


def test_items_failing_upstream_still_let_a_batch_flush():
    services = {"flaky": {"latency": 0.01, "failures": {"server_error": 0.5}, "retry": {"policy": "none"}}}
    w = pipeline({"check": {"steps": [{"call": "flaky"}], "workers": 4}, "embed": io_stage(0.01, batch=64)},
                 arrivals={"batch": 40}, services=services)
    r = a.simulate(w)
    assert 0 < r.failed < 40
    assert r.completed + r.failed == 40
    assert r.stages["check"].items == 40
    assert r.stages["embed"].items == r.completed


def test_per_stage_metrics_add_up():
    services = {"api": {"latency": {"exponential": {"mean": 0.02}}, "per_item": 0.002, "concurrency": 3}}
    w = pipeline({"parse": {"steps": [{"cpu": 0.001}], "queue": 3},
                  "embed": {"steps": [{"call": "api"}], "batch": 5, "max_wait": 0.01, "workers": 2, "queue": 4},
                  "upsert": io_stage(0.004, workers=2, queue=2)},
                 arrivals={"poisson": {"rate": 150, "count": 300}}, services=services)
    r = a.simulate(w, seed=3)
    assert r.completed == 300
    for stage in r.stages.values():
        assert stage.items == r.completed
        assert stage.throughput == pytest.approx(r.throughput)
        assert stage.batch_size_mean == pytest.approx(stage.items / stage.batches)
        assert 0 < stage.utilization <= 1
    assert 1 < r.stages["embed"].batch_size_mean <= 5
    # each moment of an item is in one state: the split still adds up to the latency
    assert r.time_split.total == pytest.approx(r.latency.mean, rel=1e-9)


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
    assert r.resources[ResourceId("limit")].mean_busy == pytest.approx(3, rel=0.01)
    assert r.throughput == pytest.approx(3 / 0.02, rel=0.02)


def test_an_admission_limit_that_partial_batches_can_use_up_is_refused_up_front():
    # 3 items allowed in, a stage waiting for 4 without max_wait: a real program hangs, so the model is refused
    w = pipeline({"embed": io_stage(0.01, batch=4)}, arrivals={"batch": 10})
    with pytest.raises(a.ModelError) as info:
        a.simulate(w, strategy="asyncio:3")
    assert info.value.problems == [
        "stages.embed.max_wait: under asyncio:3 at most 3 items are in the pipeline, and workers waiting to fill "
        "their batches (workers x (batch - 1)) can hold 3 of them with none left to admit: a deadlock; give a "
        "max_wait or a limit above 3"]
    # the sum runs over every batched stage without max_wait; one more item than they can hold is enough
    two = {"parse": io_stage(0.01, batch=3, workers=2), "embed": io_stage(0.01, batch=4),
           "upsert": io_stage(0.01, batch=8, max_wait=0.01)}
    with pytest.raises(a.ModelError, match=r"^stages.parse.max_wait, stages.embed.max_wait: under asyncio:7 "):
        pipeline(two, strategy="asyncio:7")
    assert a.simulate(pipeline(two, arrivals={"batch": 10}), strategy="asyncio:8").completed == 10
    assert a.simulate(w, strategy="asyncio:4").completed == 10
    assert a.simulate(pipeline({"embed": io_stage(0.01, batch=4, max_wait=0.05)}, arrivals={"batch": 10}),
                      strategy="asyncio:3").completed == 10


@pytest.mark.parametrize(("stage", "problem"), [
    ({"steps": [{"io": 0.01}], "queue": 0}, "stages.embed.queue: must be >= 1 (got 0)"),
    ({"steps": [{"io": 0.01}], "batch": 0}, "stages.embed.batch: must be >= 1 (got 0)"),
    ({"steps": [{"io": 0.01}], "workers": 0}, "stages.embed.workers: must be >= 1 (got 0)"),
    ({"steps": [{"io": 0.01}], "max_wait": -1}, "stages.embed.max_wait: must be >= 0 (got -1)"),
    ({"steps": [{"call": "nope"}]}, "stages.embed.steps[0].call: unknown service 'nope' (none are defined)"),
    ({"steps": []}, "stages.embed.steps: needs at least 1 item(s)"),
    ({"steps": [{"io": 0.01}], "hold": "db"}, "stages.embed.hold: unknown pool 'db' (none are defined)"),
    ({"steps": [{"io": 0.01}], "feedback": {"to": "nope", "probability": 0.5}},
     "stages.embed.feedback.to: unknown stage 'nope' (known: embed, parse)"),
    ({"steps": [{"io": 0.01}], "feedback": {"to": "embed", "probability": 1.5}},
     "stages.embed.feedback.probability: must be <= 1 (got 1.5)"),
    ({"steps": [{"io": 0.01}], "feedback": {"to": "embed", "probability": 0.5, "max_passes": 0}},
     "stages.embed.feedback.max_passes: must be >= 1 (got 0)"),
    ({"steps": [{"io": 0.01}], "feedback": {"to": "embed"}}, "stages.embed.feedback.probability: is required"),
    ({"steps": [{"io": 0.01}], "feedback": {"to": "embed", "probability": 0.5, "times": 2}},
     "stages.embed.feedback.times: unknown key (allowed: to, probability, max_passes)"),
    ({"steps": [{"io": 0.01}], "policy": {"priority": {"preemptive": True}}},
     "stages.embed.policy: only a service's queue can be preemptive (a running task or a held slot cannot be "
     "taken back)"),
])
def test_bad_stage_values_name_their_yaml_path(stage, problem):
    with pytest.raises(a.ModelError) as info:
        a.Workload.from_dict({"arrivals": {"batch": 3}, "stages": {"parse": {"steps": [{"io": 0.01}]},
                                                                   "embed": stage}})
    assert info.value.problems == [problem]


def test_feedback_goes_back_not_forward():
    with pytest.raises(a.ModelError) as info:
        a.Workload.from_dict({"arrivals": {"batch": 3}, "stages": {
            "parse": {"steps": [{"io": 0.01}], "feedback": {"to": "embed", "probability": 0.5}},
            "embed": {"steps": [{"io": 0.01}]}}})
    assert info.value.problems == ["stages.parse.feedback.to: 'embed' comes after 'parse'; feedback goes back to "
                                   "this stage or an earlier one"]


def test_a_pipeline_needs_an_asyncio_strategy():
    allowed = "use asyncio, asyncio:K (at most K items in the pipeline), asyncio+threads:N or asyncio+processes:N"
    with pytest.raises(a.ModelError) as info:
        pipeline({"embed": io_stage(0.01)}, strategy="threads:4")
    assert info.value.problems == [f"strategy: a pipeline runs its stage workers as asyncio coroutines; {allowed} "
                                   "(got threads:4)"]
    w = pipeline({"embed": io_stage(0.01)})
    with pytest.raises(a.ModelError, match=r"^strategy: .*\(got processes:2\)"):
        a.build_scenario(w, strategy="processes:2")


# ------------------------------------------------------------------------------ stage queue policies


def _stage_order(r: a.Result, stage: str) -> list[int]:
    """The items stage `stage` ran, in the order it started them."""
    tr = r.trace
    mine = (tr.kind == K_STAGE) & (tr.resource == tr.code(ResourceId("stage", stage)))
    return tr.task[mine][np.argsort(tr.start[mine], kind="stable")].tolist()


def test_a_lifo_stage_takes_the_newest_item_first():
    # the feeder puts all five before the worker first runs; lifo then serves the last one put
    r = a.simulate(pipeline({"a": io_stage(0.01, policy="lifo")}, arrivals={"batch": 5}))
    assert _stage_order(r, "a") == [4, 3, 2, 1, 0]
    assert _stage_order(a.simulate(pipeline({"a": io_stage(0.01)}, arrivals={"batch": 5})), "a") == [0, 1, 2, 3, 4]


def _loop(policy: str) -> a.Workload:
    """Items every 10 ms into a 20 ms stage; each goes round once more (feedback), and queues behind newer ones."""
    return pipeline({"a": io_stage(0.02, policy=policy),
                     "b": io_stage(0.001, feedback={"to": "a", "probability": 1.0, "max_passes": 1})},
                    arrivals={"uniform": {"interval": 0.01, "count": 6}})


def test_an_edf_stage_serves_returning_items_before_newer_ones():
    fifo, edf = a.simulate(_loop("fifo")), a.simulate(_loop("edf"))
    # fifo: a returning item joins the back of the queue, behind items that arrived after it
    assert _stage_order(fifo, "a") == [0, 1, 2, 0, 3, 4, 1, 5, 2, 3, 4, 5]
    # edf (a pipeline's one item class: the deadline is the arrival): the oldest item waiting goes first
    assert _stage_order(edf, "a") == [0, 1, 0, 1, 2, 3, 2, 3, 4, 5, 4, 5]
    assert edf.latency.mean < fifo.latency.mean


@pytest.mark.parametrize("policy", ["priority", "sjf", "fair"])
def test_policies_that_tie_on_one_item_class_serve_in_queue_order(policy):
    fifo, other = a.simulate(_loop("fifo")), a.simulate(_loop(policy))
    assert _stage_order(other, "a") == _stage_order(fifo, "a")
    assert other.t_total == fifo.t_total


def test_the_real_policy_queue_hands_items_out_in_policy_order():
    from asyncsim.policies import Policy
    from asyncsim.real.pipeline import PolicyQueue
    from asyncsim.rules.queues import Ticket

    deadline = {1: 5.0, 2: 1.0, 3: 3.0}

    async def drain(policy: str) -> tuple[list[int], bool]:
        q = PolicyQueue(3, Policy(kind=policy), lambda i: Ticket(deadline=deadline[i]))
        for i in (1, 2, 3):
            await q.put(i)
        full = q.full()
        return [q.get_nowait() for _ in range(3)], full

    assert asyncio.run(drain("edf")) == ([2, 3, 1], True)
    assert asyncio.run(drain("lifo")) == ([3, 2, 1], True)
    assert asyncio.run(drain("priority")) == ([1, 2, 3], True)


# ---------------------------------------------------------------------------------------- feedback


def test_feedback_sends_items_back_as_drawn_up_front():
    stages = {"parse": io_stage(0.001, workers=2), "check": io_stage(0.002, workers=2, feedback={
        "to": "parse", "probability": 0.4, "max_passes": 3}), "store": io_stage(0.001)}
    w = pipeline(stages, arrivals={"batch": 2000})
    sc = a.build_scenario(w, seed=5)
    returns = sc.returns[:, 1]
    assert sc.returns[:, [0, 2]].sum() == 0
    assert returns.max() == 3
    # leading successes of three draws at p = 0.4: P(0) = 0.6, P(1) = 0.24, P(2) = 0.096, P(3) = 0.064
    assert np.bincount(returns, minlength=4) / returns.size == pytest.approx([0.6, 0.24, 0.096, 0.064], abs=0.03)
    r = a.simulate(sc)
    assert r.completed == 2000
    visits = 2000 + int(returns.sum())
    assert r.stages["parse"].items == r.stages["check"].items == visits
    assert r.stages["store"].items == 2000
    # the draws are the scenario's: the same seed draws them again, another seed differently
    assert np.array_equal(a.build_scenario(w, seed=5).returns, sc.returns)
    assert not np.array_equal(a.build_scenario(w, seed=6).returns, sc.returns)


def test_a_stage_may_feed_back_into_itself_and_items_keep_their_draws():
    w = pipeline({"retry": {"steps": [{"io": {"uniform": {"low": 0.01, "high": 0.02}}}],
                            "feedback": {"to": "retry", "probability": 1.0, "max_passes": 2}}},
                 arrivals={"batch": 3})
    r = a.simulate(w)
    assert _stage_order(r, "retry") == [0, 1, 2, 0, 1, 2, 0, 1, 2]  # a returning item queues behind the others
    tr = r.trace
    io = tr.kind == K_IO
    seconds = (tr.end[io] - tr.start[io])[np.argsort(tr.task[io], kind="stable")].reshape(3, 3)
    assert seconds == pytest.approx(np.repeat(seconds[:, :1], 3, axis=1))  # each pass: the item's own draw
    assert len(set(seconds[:, 0].round(9))) == 3


# -------------------------------------------------------------------------------------------- hold


def test_hold_keeps_a_pool_slot_until_the_items_are_put_on():
    # four workers but two db slots: two at a time, each holding its slot for the 10 ms of work
    w = a.Workload.from_dict({"arrivals": {"batch": 40}, "pools": {"db": 2},
                              "stages": {"load": io_stage(0.01, workers=4, hold="db")}})
    r = a.simulate(w)
    assert r.t_total == pytest.approx(40 / 2 * 0.01)
    assert r.resources[ResourceId("pool", "db")].utilization == pytest.approx(1.0)
    # downstream backpressure: the slot stays held while the put waits for room in a slow stage's queue
    w = a.Workload.from_dict({"arrivals": {"batch": 40}, "pools": {"db": 2}, "stages": {
        "load": io_stage(0.001, workers=2, hold="db"), "slow": io_stage(0.01, queue=1)}})
    r = a.simulate(w)
    assert r.resources[ResourceId("pool", "db")].utilization > 0.9
    assert r.t_total == pytest.approx(0.001 + 40 * 0.01)


def test_hold_with_a_pool_timeout_fails_the_batch_that_got_no_slot():
    w = a.Workload.from_dict({"arrivals": {"batch": 2}, "pools": {"db": {"capacity": 1, "timeout": 0.005}},
                              "stages": {"load": io_stage(0.01, workers=2, hold="db")}})
    out = run_scenario(a.build_scenario(w))
    assert out.failed.tolist() == [False, True]
    assert out.errors == {1: "PoolTimeout: no slot of pool 'db' within 0.005s"}


# --------------------------------------------------------------------------------------- deadlocks


def test_a_consumer_waiting_on_its_own_producer_is_reported_as_a_deadlock():
    # the producers hold db slots while blocked putting into the consumer's full queue; the consumer, between
    # taking an item and putting nothing back, needs a db slot
    w = a.Workload.from_dict({"arrivals": {"batch": 10}, "pools": {"db": 2}, "stages": {
        "produce": {"steps": [{"io": 0.001}], "workers": 2, "hold": "db"},
        "consume": {"steps": [{"io": 0.02}, {"use": {"pool": "db", "steps": [{"io": 0.01}]}}], "queue": 1}}})
    with pytest.raises(DeadlockError) as exc:
        a.simulate(w)
    err = exc.value
    assert err.cycle == ["stage produce worker 0", "queue:consume", "stage consume worker 0", "pool:db",
                         "stage produce worker 0"]
    assert err.time == pytest.approx(0.021)
    assert err.holders == {"pool:db": ["stage produce worker 0", "stage produce worker 1"],
                           "queue:consume": ["stage consume worker 0"]}
    assert list(err.waits) == ["stage produce worker 0", "stage produce worker 1", "stage consume worker 0"]
    assert err.waits["stage consume worker 0"] == ("pool:db", pytest.approx(0.021))
    assert err.waits["stage produce worker 1"] == ("queue:consume", pytest.approx(0.002))
    text = str(err)
    assert text.startswith("deadlock at t=0.021s: 10 of 10 items can never finish\n")
    assert ("  stage consume worker 0 waits for pool:db (held by stage produce worker 0, stage produce worker 1) "
            "since t=0.021s") in text
    assert "  items in queues: queue:produce 6/inf, queue:consume 1/1;" in text
    assert text.endswith("  cycle: stage produce worker 0 -> queue:consume -> stage consume worker 0 -> pool:db "
                         "-> stage produce worker 0")


def test_a_cycle_of_full_bounded_queues_is_reported_as_a_deadlock():
    # check sends every item back to parse; parse blocks putting into check's full queue while check blocks
    # putting back into parse's, which the feeder keeps full
    w = a.Workload.from_dict({"arrivals": {"batch": 10}, "stages": {
        "parse": {"steps": [{"io": 0.001}], "queue": 1},
        "check": {"steps": [{"io": 0.01}], "queue": 1,
                  "feedback": {"to": "parse", "probability": 1.0, "max_passes": 2}}}})
    with pytest.raises(DeadlockError) as exc:
        a.simulate(w)
    err = exc.value
    assert err.cycle == ["stage parse worker 0", "queue:check", "stage check worker 0", "queue:parse",
                         "stage parse worker 0"]
    assert err.holders == {"queue:parse": ["stage parse worker 0"], "queue:check": ["stage check worker 0"]}
    assert err.waits == {"stage parse worker 0": ("queue:check", pytest.approx(0.003)),
                         "stage check worker 0": ("queue:parse", pytest.approx(0.011)),
                         "feeder": ("queue:parse", pytest.approx(0.002))}
    assert str(err) == (
        "deadlock at t=0.011s: 10 of 10 items can never finish\n"
        "  stage parse worker 0 waits for queue:check (held by stage check worker 0) since t=0.003s\n"
        "  stage check worker 0 waits for queue:parse (held by stage parse worker 0) since t=0.011s\n"
        "  feeder waits for queue:parse (held by stage parse worker 0) since t=0.002s\n"
        "  items in queues: queue:parse 1/1, queue:check 1/1; the rest are held by the workers above or wait for "
        "admission\n"
        "  cycle: stage parse worker 0 -> queue:check -> stage check worker 0 -> queue:parse -> stage parse worker 0")
    # an unbounded queue to return into breaks the cycle
    ok = w.evolve(stages={**w.stages, "parse": w.stages["parse"].evolve(queue=None)})
    assert a.simulate(ok).completed == 10


def test_a_stage_using_the_pool_it_holds_waits_on_itself():
    w = a.Workload.from_dict({"arrivals": {"batch": 3}, "pools": {"db": 1}, "stages": {
        "load": {"steps": [{"use": {"pool": "db", "steps": [{"io": 0.01}]}}], "hold": "db"}}})
    with pytest.raises(DeadlockError) as exc:
        a.simulate(w)
    assert exc.value.cycle == ["stage load worker 0", "pool:db", "stage load worker 0"]
    assert exc.value.waits == {"stage load worker 0": ("pool:db", 0.0)}


def test_validate_reports_a_deadlock_before_any_real_run(monkeypatch):
    validation = importlib.import_module("asyncsim.validate")  # the package exports a function of that name

    def must_not_run(*args, **kwargs):
        raise AssertionError("the real run would hang")

    monkeypatch.setattr(validation, "run_real", must_not_run)
    w = a.Workload.from_dict({"arrivals": {"batch": 10}, "stages": {
        "parse": {"steps": [{"io": 0.001}], "queue": 1},
        "check": {"steps": [{"io": 0.01}], "queue": 1, "feedback": {"to": "parse", "probability": 1.0}}}})
    with pytest.raises(DeadlockError, match="cycle: stage parse worker 0 -> queue:check"):
        validation.validate(w, profile=_IDEAL_PROFILE, cpu_rate=1e7)
