"""The fast path (sim.fast) gives the discrete-event engine's results exactly on every model it accepts.

Each comparison runs the same Scenario (the same draws) through both and compares every metric, the trace
record for record and the call log; the random models are drawn with fixed seeds.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

import asyncsim
from asyncsim.api import result_of
from asyncsim.cli import main
from asyncsim.errors import ModelError, RunLimitError
from asyncsim.scenario import build_scenario
from asyncsim.sim import run_scenario
from asyncsim.sim.fast import fifo_starts, refusal
from asyncsim.sweep import load_raw, sweep

MODELS = Path(__file__).resolve().parent.parent / "models"
STRATEGIES = ["sequential", "threads:4", "threads:8", "processes:2", "processes:4", "asyncio", "asyncio:16",
              "asyncio:100"]


def _flat(value: Any, path: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{path}.{key}").items()}
    if isinstance(value, list):
        return {k: v for i, item in enumerate(value) for k, v in _flat(item, f"{path}[{i}]").items()}
    return {path: value}


def _records(trace: asyncsim.Trace) -> list[tuple[Any, ...]]:
    names = [str(r) for r in trace.resources] + [""]
    rows = zip(trace.task.tolist(), trace.step.tolist(), trace.kind.tolist(),
               [names[r] for r in trace.resource.tolist()], trace.enqueue.tolist(), trace.start.tolist(),
               trace.end.tolist(), trace.cpu_s.tolist(), strict=True)
    return sorted(rows, key=lambda row: (*row[:4], round(row[4], 6), round(row[5], 6)))


def assert_same(scenario: asyncsim.Scenario) -> None:
    """Both engines on `scenario`: every metric, every trace record and every call attempt alike."""
    des, fast = run_scenario(scenario, engine="des"), run_scenario(scenario, engine="fast")
    assert (des.engine, fast.engine) == ("des", "fast")
    np.testing.assert_allclose(fast.done, des.done, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(fast.failed, des.failed)
    assert fast.errors == des.errors
    mine, theirs = _records(fast.trace), _records(des.trace)
    assert len(mine) == len(theirs)
    for x, y in zip(mine, theirs, strict=True):
        assert x[:4] == y[:4]
        assert x[4:] == pytest.approx(y[4:], rel=1e-12, abs=1e-12), (x, y)
    if des.calls is not None:
        assert fast.calls is not None
        for col in ("task", "step", "service", "attempt", "outcome", "size"):
            assert sorted(getattr(fast.calls, col).tolist()) == sorted(getattr(des.calls, col).tolist()), col
        np.testing.assert_allclose(np.sort(fast.calls.end), np.sort(des.calls.end), rtol=1e-12)
    a, b = _flat(result_of(scenario, des).to_dict()), _flat(result_of(scenario, fast).to_dict())
    assert a.keys() == b.keys()
    for key, x in a.items():
        y = b[key]
        if isinstance(x, float) and isinstance(y, float) and not (math.isnan(x) and math.isnan(y)):
            assert y == pytest.approx(x, rel=1e-9, abs=1e-12), key
        elif not (isinstance(x, float) and math.isnan(x)):
            assert y == x, key


@pytest.mark.parametrize("path", sorted(MODELS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_model_fast_where_eligible_and_exact(path: Path) -> None:
    workload = asyncsim.load(path)
    eligible = 0
    for strategy in [None, *STRATEGIES]:
        try:
            scenario = build_scenario(workload, seed=3, strategy=strategy)
        except ModelError:
            continue  # a pipeline under a blocking strategy
        why = refusal(scenario)
        if why is None:
            assert_same(scenario)
            eligible += 1
        else:
            assert len(why) > 20  # a reason a user can act on, not a code
            with pytest.raises(ModelError, match="the fast path does not apply"):
                run_scenario(scenario, engine="fast")
    # CPU runs alone only one at a time (sequential) or on a core per worker (processes:2 on 2 cores)
    expected = {"pool_fanout": 9, "cpu_etl": 3, "web_fetch": 2, "rag_query": 2, "tokenize_offload": 2}
    assert eligible == expected.get(path.stem, 0)


def test_refusals_name_the_mechanism() -> None:
    def why(name: str, strategy: str | None = None) -> str | None:
        return asyncsim.fast_refusal(asyncsim.load(MODELS / f"{name}.yaml"), strategy=strategy)

    assert why("pool_fanout") is None
    assert why("cpu_etl") is None  # processes:2 on 2 cores: each task has a core of its own
    assert "share the event loop" in (why("rag_query") or "")
    assert "share 2 cores" in (why("cpu_etl", "processes:4") or "")
    assert "share the GIL" in (why("web_fetch", "threads:8") or "")
    assert "can fail" in (why("llm_batch", "sequential") or "")  # one at a time: its CPU contends with nothing
    assert "pipeline" in (why("embed_backfill") or "")
    assert "wraps pool:http" in (why("pool_fanout", "asyncio:200") or "")
    assert "executor" in (why("web_fetch", "asyncio:8+threads:2") or "")


# --------------------------------------------------------------------------------------- exact by hand


def _model(**fields: Any) -> asyncsim.Workload:
    return asyncsim.Workload.from_dict({"name": "t", **fields})


def test_a_pool_starts_its_requests_fifo_on_the_slot_that_frees_first() -> None:
    w = _model(arrivals={"batch": 6}, task=[{"io": 1.0}, {"use": {"pool": "db", "steps": [{"io": 1.0}]}}],
               pools={"db": 2}, strategy="asyncio")
    r = asyncsim.simulate(w)
    assert r.engine == "fast"
    assert r.done.tolist() == [2.0, 2.0, 3.0, 3.0, 4.0, 4.0]
    assert_same(build_scenario(w))


def test_a_pool_timeout_fails_the_tasks_whose_slot_comes_too_late() -> None:
    w = _model(arrivals={"batch": 4}, task=[{"use": {"pool": "db", "steps": [{"io": 1.0}]}}],
               pools={"db": {"capacity": 1, "timeout": 1.5}}, strategy="asyncio")
    r = asyncsim.simulate(w)
    assert r.engine == "fast"
    assert r.done.tolist() == [1.0, 2.0, 1.5, 1.5]
    assert (r.completed, r.failed) == (2, 2)
    assert_same(build_scenario(w))


def test_a_limit_is_a_fifo_station_of_the_tasks_whole_time() -> None:
    w = _model(arrivals={"uniform": {"interval": 0.5, "count": 5}}, task=[{"io": 2.0}, {"call": "api"}],
               services={"api": {"latency": 1.0}}, strategy="threads:2")
    r = asyncsim.simulate(w)
    assert r.engine == "fast"
    # each takes 3 s; two at a time: starts 0, 0.5, 3, 3.5, 6
    assert r.done.tolist() == [3.0, 3.5, 6.0, 6.5, 9.0]
    assert_same(build_scenario(w))


def test_fifo_starts_is_the_kiefer_wolfowitz_recursion() -> None:
    assert fifo_starts(np.array([0, 0, 0, 1]), np.array([2, 1, 1, 1]), 2).tolist() == [0, 0, 1, 2]
    starts = fifo_starts(np.array([0, 0, 0]), np.array([5, 5, 5]), 1, timeout=6).tolist()
    assert starts[:2] == [0, 5]
    assert math.isnan(starts[2])


# ------------------------------------------------------------------------------------- random models


def _random_model(rng: np.random.Generator) -> tuple[asyncsim.Workload, str]:
    """A random model the fast path should accept (most of the time): delays, capped services, pools."""
    def dur() -> Any:
        kind = rng.integers(3)
        if kind == 0:
            return float(rng.choice([0.5, 1.0, 2.0]))  # deterministic: ties at stations
        if kind == 1:
            return {"exponential": {"mean": float(rng.uniform(0.05, 1.0))}}
        return {"lognormal": {"mean": float(rng.uniform(0.05, 1.0)), "cv": float(rng.uniform(0.2, 1.0))}}

    services = {"a": {"latency": dur(), "concurrency": int(rng.integers(1, 6))}, "b": {"latency": dur()}}
    pools: dict[str, Any] = {"p": {"capacity": int(rng.integers(1, 6))}}
    if rng.random() < 0.4:
        pools["p"]["timeout"] = float(rng.uniform(0.5, 3.0))
    strategy = str(rng.choice(["asyncio", "asyncio", "asyncio:64", "threads:64", "processes:2", "sequential"]))
    steps: list[Any] = []
    used: set[str] = set()
    for _ in range(int(rng.integers(1, 5))):
        kind = int(rng.integers(6))
        if kind == 0:
            steps.append({"io": dur()})
        elif kind == 1 and "a" not in used:
            steps.append({"call": "a"})
            used.add("a")
        elif kind == 2:
            steps.append({"call": "b"})
        elif kind == 3 and "p" not in used:
            steps.append({"use": {"pool": "p", "steps": [{"io": dur()}, {"call": "b"}][:int(rng.integers(1, 3))]}})
            used.add("p")
        elif kind == 4:
            steps.append({"parallel": [[{"io": dur()}], [{"io": dur()}, {"call": "b"}]]})
        elif strategy in ("processes:2", "sequential"):
            steps.append({"cpu": dur()})
        else:
            steps.append({"io": dur()})
    arrivals = [{"batch": int(rng.integers(5, 60))},
                {"poisson": {"rate": float(rng.uniform(2, 30)), "count": int(rng.integers(5, 80))}},
                {"uniform": {"interval": float(rng.choice([0.1, 0.25])), "count": int(rng.integers(5, 60))}}]
    w = _model(arrivals=arrivals[int(rng.integers(3))], task=steps, services=services, pools=pools,
               strategy=strategy)
    return w, strategy


def test_random_eligible_models_match_the_engine_exactly() -> None:
    rng = np.random.default_rng(20261204)
    accepted = 0
    for case in range(120):
        w, _ = _random_model(rng)
        scenario = build_scenario(w, seed=case)
        if refusal(scenario) is None:
            assert_same(scenario)
            accepted += 1
    assert accepted >= 80  # the generator makes models the fast path is meant for


def test_equal_in_distribution_over_replications() -> None:
    """The acceptance's form (equal means within the CI, KS on latencies), over 20 replications."""
    w = asyncsim.load(MODELS / "pool_fanout.yaml")
    des = asyncsim.replicate(w, replications=20, strategy="asyncio", engine="des")
    fast = asyncsim.replicate(w, replications=20, strategy="asyncio", engine="fast")
    for key in ("t_total", "latency_p99"):
        a = np.array([r.metrics()[key] for r in des.runs])
        b = np.array([r.metrics()[key] for r in fast.runs])
        assert abs(a.mean() - b.mean()) <= asyncsim.api.ci_half_width(a)
    latencies = [np.concatenate([r.done - r.arrival for r in s.runs]) for s in (des, fast)]
    assert stats.ks_2samp(*latencies).pvalue > 0.05


# ------------------------------------------------------------------------------------------ the choice


def test_engine_choice_and_its_errors() -> None:
    w = asyncsim.load(MODELS / "pool_fanout.yaml")
    assert asyncsim.simulate(w).engine == "fast"
    assert asyncsim.simulate(w, engine="des").engine == "des"
    assert asyncsim.simulate(asyncsim.load(MODELS / "rag_query.yaml")).engine == "des"
    with pytest.raises(ModelError, match="engine must be one of auto, des, fast: 'simpy'"):
        asyncsim.simulate(w, engine="simpy")
    with pytest.raises(ModelError, match="share the event loop"):
        asyncsim.simulate(asyncsim.load(MODELS / "rag_query.yaml"), engine="fast")
    with pytest.raises(RunLimitError, match="--max-sim-time"):
        asyncsim.simulate(w, max_sim_time=1.0)  # the same error as the engine's


def test_cli_says_which_engine_and_why(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", str(MODELS / "pool_fanout.yaml")]) == 0
    assert "engine: fast path" in capsys.readouterr().out
    assert main(["run", str(MODELS / "rag_query.yaml")]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "engine: discrete-event (the fast path does not apply: CPU steps (task[0]) share the event loop" in out
    assert main(["run", str(MODELS / "rag_query.yaml"), "--engine", "fast"]) == 2
    assert "--engine fast: the fast path does not apply to rag-query" in capsys.readouterr().err
    assert main(["sweep", str(MODELS / "pool_fanout.yaml"), "--set", "strategy={asyncio:50,asyncio:200}"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "fast path at 1 of 2 settings, discrete-event at 1 (at strategy=asyncio:200: the limit" in out


def test_sweep_is_the_same_on_either_engine() -> None:
    raw, base = load_raw(MODELS / "pool_fanout.yaml")
    points = [{"strategy": "asyncio:50"}, {"strategy": "asyncio"}]
    des = sweep(raw, points, replications=2, base_dir=base, engine="des")
    auto = sweep(raw, points, replications=2, base_dir=base)
    np.testing.assert_allclose(auto.select_dtypes("number").to_numpy(float),
                               des.select_dtypes("number").to_numpy(float), rtol=1e-9, equal_nan=True)
