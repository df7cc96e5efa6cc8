"""A result's parts: each `to_dict()` is its JSON object key for key, `from_dict` reads it back, tables frame."""

from __future__ import annotations

import math
from dataclasses import fields

import pandas as pd
import pytest

import asyncsim as a
from asyncsim.services import OUTCOMES
from asyncsim.stats import (
    ClassStats,
    Concurrency,
    Cost,
    Latency,
    ResourceStats,
    ServiceStats,
    StageStats,
    StatsTable,
    TimeSplit,
)
from asyncsim.trace import ResourceId

from .conftest import ROOT


def test_the_parts_write_the_documented_keys_in_order():
    assert list(Latency(1.0, 2.0, 3.0, 4.0, 5.0).to_dict()) == ["mean", "p50", "p95", "p99", "max"]
    assert Concurrency(mean=3.0, peak=7, computing=0.5, waiting=1.5, queued=0.75, throttled=0.25).to_dict() == {
        "mean": 3.0, "peak": 7, "computing_mean": 0.5, "waiting_mean": 1.5, "queued_mean": 0.75,
        "throttled_mean": 0.25}
    assert list(TimeSplit(0.1, 0.2, 0.3, 0.4).to_dict()) == ["task", "wait", "queue", "throttled"]
    assert TimeSplit(0.25, 0.5, 1.0, 0.125).total == 1.875
    assert list(Cost(3.0, 1.0, 2.0, 0.5).to_dict()) == ["total", "usage", "capacity", "wasted"]
    # an unbounded resource writes null capacity and utilisation: the keys are always there
    assert ResourceStats(None, None, 1.0, 0.0, 0.0).to_dict() == {
        "capacity": None, "utilization": None, "mean_busy": 1.0, "mean_wait": 0.0, "mean_queue": 0.0}


def test_optional_figures_are_left_out_until_they_apply():
    service = ServiceStats(calls=2, requests=3, ok=2, rate_limited=1, server_error=0, timeout=0, rejected=0,
                           retries=1, failed=0, tokens=10.0, tokens_wasted=0.0)
    assert "cost" not in service.to_dict()
    assert "batch_size_max" not in service.to_dict()
    priced = ServiceStats(**{**service.to_dict(), "cost": 0.5, "cost_wasted": 0.0})
    assert list(priced.to_dict())[-2:] == ["cost", "cost_wasted"]
    cls = ClassStats(tasks=4, completed=3, failed=1, t_total=2.0, throughput=2.0, goodput=1.5,
                     latency=Latency(1.0, 1.0, 1.0, 1.0, 1.0), deadline=0.5, deadline_missed=2)
    d = cls.to_dict()
    assert list(d) == ["tasks", "completed", "failed", "t_total", "throughput", "goodput", "latency", "deadline",
                       "deadline_missed"]
    assert d["latency"] == {"mean": 1.0, "p50": 1.0, "p95": 1.0, "p99": 1.0, "max": 1.0}
    assert ClassStats.from_dict(d) == cls


def test_a_service_has_a_field_per_outcome():
    """A new outcome in services.OUTCOMES must get its own field (service_metrics passes them by name)."""
    names = [f.name for f in fields(ServiceStats)]
    assert names[2:2 + len(OUTCOMES)] == list(OUTCOMES)


@pytest.mark.parametrize("part", [
    Latency(1.0, 2.0, 3.0, 4.0, 5.0), Concurrency(3.0, 7, 0.5, 1.5, 0.75, 0.25), TimeSplit(0.1, 0.2, 0.3, 0.4),
    ResourceStats(4, 0.5, 2.0, 0.1, 0.2), StageStats(10.0, 1.0, 5, 2.0, 2, 0.5, 0.1, 0.2), Cost(3.0, 1.0, 2.0, 0.5),
])
def test_every_part_reads_back_what_it_writes(part):
    assert type(part).from_dict(part.to_dict()) == part


def test_a_missing_figure_is_named_with_where_it_was_expected():
    with pytest.raises(ValueError, match=r"^classes\.chat\.latency: missing 'p99'$"):
        ClassStats.from_dict({"tasks": 1, "completed": 1, "failed": 0, "t_total": 1.0, "throughput": 1.0,
                              "goodput": 1.0, "latency": {"mean": 1, "p50": 1, "p95": 1, "max": 1}},
                             "classes.chat")
    with pytest.raises(ValueError, match=r"^concurrency: missing 'queued_mean'$"):
        Concurrency.from_dict({"mean": 1, "peak": 1, "computing_mean": 0, "waiting_mean": 0, "throttled_mean": 0})
    with pytest.raises(ValueError, match="resource: expected an object, got list"):
        ResourceStats.from_dict([1, 2])  # type: ignore[arg-type]  # the wrong shape, on purpose


def test_null_latency_reads_as_nan():
    """Strict JSON writes a latency with no value (no task completed) as null."""
    latency = Latency.from_dict({"mean": None, "p50": None, "p95": None, "p99": None, "max": None})
    assert all(math.isnan(v) for v in latency.to_dict().values())


def test_tables_frame_one_row_per_name():
    r = a.simulate(a.load(ROOT / "models" / "shared_llm.yaml"), seed=0)
    resources = r.resources.to_frame()
    assert resources.index.name == "resource"
    assert list(resources.index) == [str(k) for k in r.resources]
    assert list(resources.columns) == ["capacity", "utilization", "mean_busy", "mean_wait", "mean_queue"]
    services = r.services.to_frame()
    assert services.loc["llm", "rate_limited"] == r.services["llm"].rate_limited
    classes = r.classes.to_frame()
    assert classes.index.name == "class"
    assert set(classes.index) == set(r.classes)
    for name, c in r.classes.items():  # the latency figures flattened: latency_p99
        assert classes.loc[name, "latency_p99"] == c.latency.p99
        assert classes.loc[name, "deadline_missed"] == c.deadline_missed
    empty = StatsTable(label="stage").to_frame()
    assert isinstance(empty, pd.DataFrame)
    assert empty.empty
    assert empty.index.name == "stage"


def test_a_table_is_a_read_only_mapping_with_its_json():
    table = StatsTable({ResourceId("pool", "db"): ResourceStats(2, 0.5, 1.0, 0.0, 0.0)}, label="resource")
    assert table == {ResourceId("pool", "db"): ResourceStats(2, 0.5, 1.0, 0.0, 0.0)}
    assert table.to_dict() == {"pool:db": {"capacity": 2, "utilization": 0.5, "mean_busy": 1.0, "mean_wait": 0.0,
                                           "mean_queue": 0.0}}
    with pytest.raises(TypeError):
        table[ResourceId("loop")] = ResourceStats(1, 0.1, 0.1, 0.0, 0.0)  # type: ignore[index]  # read-only on purpose
