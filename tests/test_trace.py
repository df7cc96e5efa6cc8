"""Resource identities: parsed once from the executors' names, typed everywhere after, strings again in JSON."""

from __future__ import annotations

import pytest

import asyncsim as a
from asyncsim.trace import K_CPU, ResourceId, TraceBuilder


@pytest.mark.parametrize(("text", "kind", "name"), [
    ("pool:db", "pool", "db"), ("service:llm", "service", "llm"), ("stage:embed", "stage", "embed"),
    ("limiter:llm", "limiter", "llm"), ("backoff:llm", "backoff", "llm"), ("service:a:b", "service", "a:b"),
    ("loop", "loop", None), ("gil", "gil", None), ("cores", "cores", None), ("executor", "executor", None),
    ("limit", "limit", None), ("workers", "workers", None),
])
def test_a_resource_name_parses_into_its_kind_and_name_and_back(text, kind, name):
    rid = ResourceId.parse(text)
    assert (rid.kind, rid.name) == (kind, name)
    assert str(rid) == text
    assert rid == ResourceId(kind, name)
    assert eval(repr(rid), {"ResourceId": ResourceId}) == rid  # the repr is the constructor call


@pytest.mark.parametrize(("text", "problem"), [
    ("queue:db", "resource kind must be one of limit, workers, loop"),
    ("pool", "resource kind 'pool' needs a name (kind:NAME)"),
    ("pool:", "resource kind 'pool' needs a name"),
    ("loop:x", "resource kind 'loop' takes no name: loop:x"),
    ("", "resource kind must be one of"),
])
def test_a_name_that_is_no_resource_is_refused_with_the_text(text, problem):
    with pytest.raises(ValueError, match="not a resource name: ") as exc:
        ResourceId.parse(text)
    assert repr(text) in str(exc.value)
    assert problem in str(exc.value)


def test_the_builder_parses_each_name_once_and_keeps_the_codes():
    tb = TraceBuilder()
    assert tb.resource_id("pool:db") == 0
    assert tb.resource_id("loop") == 1
    assert tb.resource_id("pool:db") == 0
    assert tb.resource_id(None) == -1
    tb.add(0, 0, K_CPU, 1, 0.0, 0.0, 1.0, 1.0)
    trace = tb.build()
    assert trace.resources == (ResourceId("pool", "db"), ResourceId("loop"))
    assert trace.code(ResourceId("loop")) == 1
    assert trace.code(ResourceId("service", "llm")) == -1
    assert list(trace.to_frame()["resource"]) == ["loop"]  # tables and JSON keep the string form
    with pytest.raises(ValueError, match="not a resource name: 'pools:db'"):
        tb.resource_id("pools:db")


def test_results_are_keyed_by_identities_and_json_by_their_names(mixed):
    r = a.simulate(mixed, strategy="asyncio:8", seed=1)
    assert all(isinstance(k, ResourceId) for k in r.resources)
    assert r.resources[ResourceId("pool", "db")].capacity == 3
    assert set(r.to_dict()["resources"]) == {str(k) for k in r.resources} >= {"pool:db", "service:api", "loop"}
