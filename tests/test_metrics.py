"""Goodput, lost work and cost: what every result says about the work that was not done and what it cost."""

from __future__ import annotations

import numpy as np
import pytest

import asyncsim as a
from asyncsim.errors import ModelError
from asyncsim.metrics import METRICS


def _lossy() -> a.Workload:
    """100 calls at once into 60 RPM with a 10-request burst and no retries: exactly 90 get a 429 and fail."""
    return a.Workload.from_dict({
        "name": "lossy", "arrivals": {"batch": 100}, "task": [{"call": "llm"}],
        "services": {"llm": {"latency": 1.0, "rate_limit": {"rpm": 60, "burst_requests": 10},
                             "retry": {"policy": "none"}}},
        "strategy": "asyncio",
    })


def test_goodput_counts_completed_tasks_and_throughput_every_finished_one():
    r = a.simulate(_lossy(), seed=0)
    assert (r.completed, r.failed, r.lost) == (10, 90, 90)
    # the 90 refused calls fail at t = 0; the 10 admitted ones finish at t = 1 s
    assert r.t_total == pytest.approx(1.0)
    assert r.goodput == pytest.approx(10.0)
    assert r.throughput == pytest.approx(100.0)
    d = r.to_dict()
    assert d["failed_fraction"] == pytest.approx(0.9)
    # Little's law over every finished task: the failed ones were in flight for 0 s, the others for 1 s
    finished = ~np.isnan(r.done)
    assert r.concurrency.mean == pytest.approx(r.throughput * float((r.done - r.arrival)[finished].mean()))
    assert r.concurrency.mean == pytest.approx(10.0)


def test_flat_metrics_have_every_documented_name():
    m = a.simulate(_lossy(), seed=0).metrics()
    assert set(METRICS) <= set(m)
    assert (m["rate_limited"], m["retries"], m["requests"], m["cost"]) == (90, 0, 100, 0)


def _priced(**llm: object) -> a.Workload:
    return a.Workload.from_dict({
        "name": "priced", "arrivals": {"batch": 300},
        "tasks": [{"name": "chat", "steps": [{"call": "llm"}]},
                  {"name": "local", "steps": [{"use": {"pool": "gpu", "steps": [{"io": 0.01}]}}]}],
        "services": {"llm": {"latency": 0.5, "tokens": {"input": 1000, "output": 200},
                             "failures": {"server_error": 0.1},
                             "price": {"input_per_1m": 0.15, "output_per_1m": 0.6, "per_request": 0.001},
                             **llm}},
        "pools": {"gpu": {"capacity": 2, "price": {"per_second": 0.01}}},
        "strategy": "asyncio:20",
    })


def test_cost_bills_accepted_attempts_and_provisioned_capacity_exactly():
    r = a.simulate(_priced(), seed=4)
    svc = r.services["llm"]
    accepted = svc.ok + svc.server_error  # a 5xx comes after the server accepted (and billed) the request
    per_request = (1000 * 0.15 + 200 * 0.6) / 1e6 + 0.001
    assert svc.cost == pytest.approx(accepted * per_request)
    assert svc.cost_wasted == pytest.approx(svc.server_error * per_request)
    assert r.cost.capacity == pytest.approx(2 * 0.01 * r.t_total)  # two GPU slots for the whole run
    assert r.cost.total == pytest.approx(svc.cost + r.cost.capacity)
    assert r.cost.wasted == pytest.approx(svc.cost_wasted)
    # a class pays for its own calls; capacity is shared and not split
    assert r.classes["chat"].cost == pytest.approx(svc.cost)
    assert r.classes["local"].cost == 0
    assert r.metrics()["chat.cost"] == pytest.approx(svc.cost)


def test_a_429_costs_nothing():
    w = _priced(rate_limit={"rpm": 60, "burst_requests": 5}, retry={"policy": "none"}, failures={})
    r = a.simulate(w, seed=0)
    svc = r.services["llm"]
    assert svc.rate_limited > 0
    assert svc.cost == pytest.approx(svc.ok * ((1000 * 0.15 + 200 * 0.6) / 1e6 + 0.001))


def test_a_model_without_prices_has_no_cost():
    r = a.simulate(_lossy(), seed=0)
    assert r.cost is None
    assert "cost" not in r.to_dict()


@pytest.mark.parametrize(("where", "price", "message"), [
    ("services.llm", {"input_per_1m": 1.0}, "price: input_per_1m and output_per_1m bill tokens"),
    ("services.llm", {"per_second": 1.0}, "price.per_second bills provisioned instances"),
    ("pools.gpu", {"per_request": 1.0}, "a pool or a stage bills its capacity"),
    ("services.llm", {"per_request": -1.0}, "services.llm.price.per_request: must be >= 0"),
])
def test_prices_that_cannot_be_billed_are_refused(where, price, message):
    raw = {"name": "bad", "arrivals": {"batch": 1},
           "task": [{"use": {"pool": "gpu", "steps": [{"call": "llm"}]}}],
           "services": {"llm": {"latency": 0.1}}, "pools": {"gpu": {"capacity": 1}}}
    kind, name = where.split(".")
    raw[kind][name]["price"] = price
    with pytest.raises(ModelError, match=message):
        a.Workload.from_dict(raw)
