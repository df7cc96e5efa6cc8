"""record → fit → predict another setting → run it for real (issue 15's proof).

summarise.py (the openai client, 60 documents) is recorded for real against `asyncsim serve` at CONCURRENCY=8.
Two predictions are made from that one recording: the twin runs the same program with services fitted from
its call log (latency, tokens, the key's limit and burst from the rate-limit headers, the retry-after mode),
and the whole fitted model (`fit_model`: arrivals, steps, the semaphore as the strategy's limit, services, the
client's retry budget) is simulated (means of 10 replications). The program is then run (and recorded) for
real at CONCURRENCY=4 and 16: T_total within 10%, p95 within 15%, both ways. A miss is measured again (up to
ATTEMPTS times). crawl.py (aiohttp, its connector's limit as the knob) is predicted from its model the same way.
"""

from __future__ import annotations

import contextlib
import io

import pytest

from asyncsim import twin
from asyncsim.api import replicate
from asyncsim.fitting import fit_model, fit_service, read_calls, services_yaml
from asyncsim.real.http import serving
from asyncsim.record import record_program
from asyncsim.results import Result

from ..conftest import ROOT

pytestmark = pytest.mark.validation

PROGRAMS = ROOT / "experiments" / "programs"
ATTEMPTS = 2


def _errors(predicted: Result, real: Result) -> tuple[float, float]:
    return predicted.t_total / real.t_total - 1, predicted.latency.p95 / real.latency.p95 - 1


def _within(errors: tuple[float, float]) -> bool:
    return abs(errors[0]) <= 0.10 and abs(errors[1]) <= 0.15


def _record_both(program, env: dict[str, str], seen: str, other: str, tmp_path, monkeypatch, *, seed: int) -> Result:
    """The program recorded for real against `serve` (its services file) at CONCURRENCY=`seen` (into
    tmp_path/seen) and at `other`; the Result of the second."""
    with serving(twin.load_services(program.with_suffix(".yaml")), seed=seed) as (url, _log):
        monkeypatch.setenv("OPENAI_BASE_URL", url)
        monkeypatch.setenv("CRAWL_BASE", url.removesuffix("/v1"))
        for key, value in {**env, "CONCURRENCY": seen}.items():
            monkeypatch.setenv(key, value)
        with contextlib.redirect_stdout(io.StringIO()):
            record_program(program, [], tmp_path / "seen")
            monkeypatch.setenv("CONCURRENCY", other)
            return record_program(program, [], tmp_path / "other")


def _simulated(model, **changes) -> Result:
    return Result.from_dict(replicate(model.evolve(**changes), replications=10).to_dict())


@pytest.mark.parametrize("other", ["4", "16"])
def test_a_model_fitted_from_one_run_predicts_another_setting(other, tmp_path, monkeypatch):
    pytest.importorskip("openai")
    program = PROGRAMS / "summarise.py"
    seen = []
    for k in range(ATTEMPTS):
        real = _record_both(program, {"DOCS": "60"}, "8", other, tmp_path, monkeypatch, seed=k)
        calls = read_calls(tmp_path / "seen" / "calls.jsonl")
        fitted = tmp_path / "fitted.yaml"
        fitted.write_text(services_yaml([fit_service(name, [c for c in calls if c.service == name])
                                         for name in dict.fromkeys(c.service for c in calls)], "calls.jsonl"))
        with contextlib.redirect_stdout(io.StringIO()):
            in_twin = twin.run_program(program, services=fitted, seed=k)
        model = fit_model(tmp_path / "seen").workload
        assert str(model.strategy) == "asyncio:8"  # the program's semaphore
        simulated = _simulated(model, strategy=f"asyncio:{other}")
        errors = {"twin": _errors(in_twin, real), "model": _errors(simulated, real)}
        seen.append({k: (round(t, 3), round(p, 3)) for k, (t, p) in errors.items()})
        if all(_within(e) for e in errors.values()):
            return
    pytest.fail(f"CONCURRENCY={other}: (T_total error, p95 error) per attempt: {seen}")


def test_a_crawler_fitted_at_one_connection_limit_predicts_another(tmp_path, monkeypatch):
    pytest.importorskip("aiohttp")
    program = PROGRAMS / "crawl.py"
    seen = []
    for k in range(ATTEMPTS):
        real = _record_both(program, {"PAGES": "200"}, "50", "20", tmp_path, monkeypatch, seed=k)
        fit = fit_model(tmp_path / "seen")
        (svc,) = fit.services
        assert svc.connections == 50  # the connector's limit, seen from the tasks it held back
        services = dict(fit.workload.services)
        services[svc.key] = services[svc.key].model_copy(update={"connections": 20})
        errors = _errors(_simulated(fit.workload, services=services), real)
        seen.append((round(errors[0], 3), round(errors[1], 3)))
        if _within(errors):
            return
    pytest.fail(f"connections 20: (T_total error, p95 error) per attempt: {seen}")
