"""`asyncsim fit DIR`: a whole model (arrivals, task types, steps, locks, services) from a recorded run (issue 15)."""

from __future__ import annotations

import contextlib
import io
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

import asyncsim as a
from asyncsim.cli import main
from asyncsim.errors import ModelError
from asyncsim.fitting import _arrivals_lines, fit_model, select
from asyncsim.real.http import serving
from asyncsim.record import record_program

BURN = '''
import asyncio, os, sys, time

def burn(seconds):
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass
'''

WHOLE = BURN + '''
async def one(sem):
    async with sem:
        burn(0.002)
        await asyncio.sleep(0.03)
        burn(0.001)

async def main():
    sem = asyncio.Semaphore(4)
    await asyncio.gather(*(one(sem) for _ in range(40)))

asyncio.run(main())
'''


def _record(tmp_path, source: str, argv=(), name: str = "run"):
    program = tmp_path / f"{name}.py"
    program.write_text(textwrap.dedent(source))
    with contextlib.redirect_stdout(io.StringIO()):
        record_program(program, list(argv), tmp_path / name)
    return tmp_path / name


def _model(fit) -> dict:
    a.Workload.from_dict(yaml.safe_load(fit.yaml))  # it is a valid model
    return yaml.safe_load(fit.yaml)


def _mean(value) -> float:
    """The mean of a fitted YAML value (a number or {family: {mean: ...}} or empirical values)."""
    if isinstance(value, int | float):
        return float(value)
    (family, params), = value.items()
    return sum(params["values"]) / len(params["values"]) if family == "empirical" else params["mean"]


def test_a_semaphore_around_each_task_is_the_strategy_limit_and_its_steps_are_fitted(tmp_path):
    fit = fit_model(_record(tmp_path, WHOLE))
    model = _model(fit)
    assert model["strategy"] == "asyncio:4"
    assert model["arrivals"] == {"batch": 40}
    kinds = [next(iter(step)) for step in model["task"]]
    assert kinds == ["cpu", "io", "cpu"]
    cpu0, wait, cpu1 = (_mean(next(iter(step.values()))) for step in model["task"])
    assert cpu0 == pytest.approx(0.002, rel=0.3)  # thread CPU: burn's own measure
    assert wait == pytest.approx(0.03, rel=0.1)  # the sleep, from when it began to when its timer was due
    assert cpu1 == pytest.approx(0.001, rel=0.3)
    # each step says why it is what it is. Which one it is depends on the host: a busy loop's near-constant
    # samples pass KS for a lognormal in some runs and not others (on 2026-12-05/06 most missed), and are then
    # kept as they are; the choice itself is pinned on drawn samples in tests/test_fit.py
    step_lines = [line for line in fit.yaml.splitlines() if line.lstrip().startswith("- ")]
    assert len(step_lines) == 3
    for line, step in zip(step_lines, model["task"], strict=True):
        (family,) = next(iter(step.values())).keys()
        if family == "empirical":
            assert "empirical: 40 samples (no family passed KS at p ≥ 0.01; AIC " in line
        else:
            assert f"{family}: n 40, AIC" in line
            assert "KS p" in line
    assert "Semaphore of capacity 4" in fit.yaml


def test_a_lock_around_part_of_the_work_is_a_pool_and_task_types_are_weighted(tmp_path):
    source = '''
    async def one(sem, i):
        burn(0.001)
        async with sem:
            await asyncio.sleep(0.02)
        if i % 2:
            await asyncio.sleep(0.01)
        burn(0.001)

    async def main():
        sem = asyncio.Semaphore(2)
        await asyncio.gather(*(one(sem, i) for i in range(30)))

    asyncio.run(main())
    '''
    model = _model(fit_model(_record(tmp_path, BURN + textwrap.dedent(source))))
    assert model["strategy"] == "asyncio"
    assert model["pools"] == {"semaphore1": {"capacity": 2}}
    assert sorted(t["weight"] for t in model["tasks"]) == [15, 15]
    for t in model["tasks"]:
        kinds = [next(iter(step)) for step in t["steps"] if "cpu" not in step]
        held = [s["use"] for s in t["steps"] if "use" in s]
        assert len(held) == 1
        assert held[0]["pool"] == "semaphore1"
        assert [next(iter(s)) for s in held[0]["steps"] if "cpu" not in s] == ["io"]  # (and µs of CPU around it)
        assert kinds in (["use"], ["use", "io"])


def test_arrivals_spread_over_time_are_fitted_as_a_poisson_stream(tmp_path):
    source = '''
    import random

    async def one():
        burn(0.0005)
        await asyncio.sleep(0.01)

    async def main():
        rng, tasks = random.Random(4), []
        for _ in range(80):
            tasks.append(asyncio.create_task(one()))
            await asyncio.sleep(rng.expovariate(200))
        await asyncio.gather(*tasks)

    asyncio.run(main())
    '''
    model = _model(fit_model(_record(tmp_path, BURN + textwrap.dedent(source))))
    assert model["arrivals"]["poisson"]["count"] == 80
    assert model["arrivals"]["poisson"]["rate"] == pytest.approx(200, rel=0.3)


def test_retries_are_one_call_and_a_connection_handed_over_is_the_clients_cap(tmp_path, monkeypatch):
    pytest.importorskip("aiohttp")
    source = '''
    import asyncio, os
    import aiohttp

    async def one(session, i):
        for attempt in range(8):
            async with session.post(os.environ["URL"] + "/chat/completions",
                                    json={"model": "llm", "messages": []}) as r:
                await r.read()
                if r.status != 429:
                    return r.status
            await asyncio.sleep(float(r.headers["retry-after"]))

    async def main():
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2)) as session:
            await asyncio.gather(*(one(session, i) for i in range(12)))

    asyncio.run(main())
    '''
    spec = {"latency": 0.05, "tokens": {"input": 100, "output": 20}, "rate_limit": {"rpm": 1200, "burst_requests": 3},
            "server": {"retry_after": "exact"}}
    w = a.Workload(arrivals=a.Batch(count=1), task=(a.io(0.0),), services={"llm": a.Service.model_validate(spec)})
    with serving(w) as (url, _log):
        monkeypatch.setenv("URL", url)
        fit = fit_model(_record(tmp_path, textwrap.dedent(source)))
    model = _model(fit)
    (svc,) = fit.services
    assert svc.rate_limited > 0  # some attempts were refused ...
    types = model.get("tasks") or [{"steps": model["task"], "weight": 12}]
    main_type = max(types, key=lambda t: t["weight"])
    # ... yet each task makes one call: its retries and their back-off, and its waits for a connection, are in it
    assert [next(iter(s)) for s in main_type["steps"] if "cpu" not in s] == ["call"]
    assert main_type["weight"] >= 8  # (the first two connect first: a wait of their own)
    assert model["services"]["api"]["connections"] == 2  # the connector's limit, from the tasks it held back
    assert svc.connection_waits >= 6
    assert "aiohttp" in fit.yaml
    assert "has no profile" in fit.yaml


def test_the_command_fits_reports_checks_and_plans_the_model(tmp_path, capsys):
    run = _record(tmp_path, WHOLE)
    out, report = tmp_path / "fitted.yaml", tmp_path / "report"
    assert main(["fit", str(run), "--out", str(out), "--report", str(report)]) == 0
    text = (report / "report.md").read_text()
    assert "| T_total |" in text
    assert "in_flight.png" in text
    assert (report / "cdfs.png").stat().st_size > 1000
    assert (report / "in_flight.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(["check", str(out), "--against", str(run), "--json", "--tolerance", "0.5"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["figures"]["completed"] == {"recorded": 40, "simulated": 40}
    # a model that is far off misses the tolerance: exit 1
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(out.read_text().replace("strategy: asyncio:4", "strategy: asyncio:1"))
    assert main(["check", str(wrong), "--against", str(run), "--tolerance", "0.5"]) == 1
    # what the fit is for: asking another setting of it
    assert main(["plan", str(out), "--vary", "strategy=asyncio:1..8", "--slo", "p99 < 5s", "--json"]) == 0
    assert "asyncio:8" in capsys.readouterr().out


def test_bad_or_truncated_recordings_are_named(tmp_path, capsys):
    run = _record(tmp_path, WHOLE)
    lines = (run / "tasks.jsonl").read_text().splitlines()
    (run / "tasks.jsonl").write_text("\n".join([*lines[:3], lines[3][:40]]) + "\n")
    with pytest.raises(ModelError, match=r"run/tasks.jsonl: line 4: not JSON .*a truncated recording"):
        fit_model(run)
    (run / "tasks.jsonl").write_text(lines[0].replace('["cpu", ', '["cpu", "x", ', 1) + "\n")
    with pytest.raises(ModelError, match=r"line 1: events\[0\]: not an event"):
        fit_model(run)
    unfinished = [json.loads(line) | {"done": None} for line in lines]
    (run / "tasks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in unfinished))
    with pytest.raises(ModelError, match=r"none of the 40 tasks .* finished"):
        fit_model(run)
    assert main(["fit", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.yaml")]) == 2
    assert "cannot read the call log" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="holds no recording with tasks"):
        fit_model(tmp_path / "empty")


def test_too_few_samples_are_kept_as_they_are():
    fitted = select([0.1, 0.12, 0.3, 0.11, 0.2])
    assert fitted.family == "empirical"
    assert fitted.comment() == "empirical: only 5 samples (a family is fitted from 8)"


def _arrivals_of(gaps: np.ndarray) -> str:
    created = np.concatenate([[0.0], np.cumsum(gaps)])
    return _arrivals_lines([{"created": c, "done": c + 0.01} for c in created], Path("."))[0]


def test_a_poisson_stream_seen_through_a_busy_loop_is_still_poisson_and_gamma_gaps_are_not():
    """Exponential gaps (5 ms mean) that a loop rounds up to whole milliseconds and delays by 0.5-2.5 ms each
    (a loaded host) are a Poisson stream above their floor (whole cv ~0.7); gamma-2 gaps on the same floor are
    not (their excess has cv ~0.75): their recorded times are kept."""
    rng = np.random.default_rng(4)
    loaded = np.ceil(rng.exponential(0.005, 79) * 1e3) * 1e-3 + rng.uniform(0.0005, 0.0025, 79)
    assert loaded.std() / loaded.mean() < 0.85  # the whole gaps alone would not pass for exponential
    assert _arrivals_of(loaded).startswith("arrivals: {poisson: {rate:")
    assert "trace" not in _arrivals_of(loaded)
    even = 0.002 + rng.gamma(2.0, 0.0025, 79)
    assert _arrivals_of(even).startswith("arrivals:    # the recorded creation times")
