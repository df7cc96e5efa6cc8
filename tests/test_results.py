"""`Result`: typed figures whose `to_dict()` is the JSON, read back by `from_dict` (what `report` consumes)."""

from __future__ import annotations

import json

import pytest

import asyncsim as a
from asyncsim import _json
from asyncsim.results import METRICS, Result, flat_metrics
from asyncsim.stats import ClassStats, Cost, ServiceStats, StageStats

from .conftest import ROOT

# services and retries, classes with deadlines and a steady verdict, stages and prices, batching
SHOWCASE = [("llm_batch", "asyncio:32"), ("shared_llm", None), ("rag_ingest", None), ("gpu_server", None),
            ("web_fetch", "threads:8")]


@pytest.mark.parametrize(("model", "strategy"), SHOWCASE)
def test_from_dict_reads_back_every_figure_of_run_json(model, strategy):
    r = a.simulate(a.load(ROOT / "models" / f"{model}.yaml"), strategy=strategy, seed=1)
    text = _json.dumps(r.to_dict())
    back = Result.from_dict(json.loads(text))  # through strict JSON: nulls and all
    assert _json.dumps(back.to_dict()) == text
    assert back.metrics() == pytest.approx(r.metrics(), nan_ok=True)
    assert back.per_task is None
    for part in ("latency", "concurrency", "time_split", "cost", "steady"):
        assert (getattr(back, part) is None) == (getattr(r, part) is None), part
    assert back.resources == r.resources
    assert back.services == r.services
    assert back.stages == r.stages
    assert back.bottleneck == r.bottleneck


def test_the_parts_are_typed():
    r = a.simulate(a.load(ROOT / "models" / "rag_ingest.yaml"), seed=0)
    assert all(isinstance(s, StageStats) for s in r.stages.values())
    assert all(isinstance(s, ServiceStats) for s in r.services.values())
    assert isinstance(r.cost, Cost)
    assert r.bottleneck == max(r.stages, key=lambda k: r.stages[k].utilization)
    shared = a.simulate(a.load(ROOT / "models" / "shared_llm.yaml"), seed=0)
    assert all(isinstance(c, ClassStats) and c.deadline is not None for c in shared.classes.values())


def test_metrics_has_every_flat_name_and_flat_metrics_reads_json():
    r = a.simulate(a.load(ROOT / "models" / "shared_llm.yaml"), seed=0)
    m = r.metrics()
    assert list(m)[:len(METRICS)] == list(METRICS)
    assert m["rate_limited"] == sum(s.rate_limited for s in r.services.values())
    assert m["cost"] == r.cost.total
    for name, c in r.classes.items():
        assert m[f"{name}.p99"] == c.latency.p99
        assert m[f"{name}.deadline_missed"] == c.deadline_missed
    assert flat_metrics(r.to_dict()) == m


def test_a_result_read_from_json_says_it_has_no_trace():
    r = Result.from_dict(a.simulate(a.load(ROOT / "models" / "cpu_etl.yaml"), seed=0).to_dict())
    for what in ("trace", "arrival", "done", "completed_tasks", "events"):
        with pytest.raises(ValueError, match=r"was read from JSON: it holds the figures only"):
            getattr(r, what)
    with pytest.raises(ValueError, match="no trace or per-task data"):
        r.to_frame()


def test_replicated_means_read_as_a_result():
    summary = a.replicate(a.load(ROOT / "models" / "llm_batch.yaml"), replications=3, seed=0)
    d = summary.to_dict()
    mean = Result.from_dict(d)
    assert mean.t_total == pytest.approx(sum(r.t_total for r in summary.runs) / 3)
    assert mean.latency.p99 == d["latency"]["p99"]
    assert mean.services["llm"].rate_limited == d["services"]["llm"]["rate_limited"]
    assert mean.steady is None or mean.steady.stable == d["steady"]["stable"]


@pytest.mark.parametrize(("drop", "message"), [
    ("latency", "missing 'latency'"), ("resources", "missing 'resources'"), ("model", "missing 'model'"),
])
def test_a_malformed_object_names_the_missing_key(drop, message):
    d = a.simulate(a.load(ROOT / "models" / "cpu_etl.yaml"), seed=0).to_dict()
    del d[drop]
    with pytest.raises(ValueError, match=message):
        Result.from_dict(d)


def test_a_resource_name_is_checked_when_read():
    d = a.simulate(a.load(ROOT / "models" / "cpu_etl.yaml"), seed=0).to_dict()
    first = next(iter(d["resources"]))
    d["resources"]["pools:db"] = d["resources"].pop(first)
    with pytest.raises(ValueError, match="not a resource name: 'pools:db'"):
        Result.from_dict(d)
