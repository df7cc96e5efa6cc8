"""A REAL client library against `asyncsim serve`, compared with the prediction (issue 13's HTTP validation).

The openai package (its own retries, back-off and retry-after rules) runs 60 chat completions under
`asyncio.Semaphore(K)` against the emulated API, which takes the simulator's draws for each attempt. The
prediction uses the library's CPU per request, measured first (`calibrate --client openai`). Bar: T_total
within 5%, 429s and failed tasks within 10% or 3. A miss is measured again (up to ATTEMPTS times).
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from asyncsim.cli import main
from asyncsim.real.http import measure_client_cpu
from asyncsim.validate import validate_http

from ..conftest import ROOT

pytestmark = pytest.mark.validation

ATTEMPTS = 3


def _experiment():
    """experiments/ai_clients.py (its `workload` is the one this test runs)."""
    spec = importlib.util.spec_from_file_location("ai_clients", ROOT / "experiments" / "ai_clients.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


llm = _experiment().workload


@pytest.fixture(scope="module")
def client_cpu() -> float:
    return measure_client_cpu()


def _close(a_: int, b_: int) -> bool:
    return abs(a_ - b_) <= max(3, 0.10 * b_)


@pytest.mark.parametrize(("rpm", "strategy", "retry_after", "limited"), [
    (1200, "asyncio:4", "exact", False),  # below the limit: no 429
    (600, "asyncio:32", "ceil_seconds", True),  # far above it: whole-second retry-afters, retries, failures
])
def test_the_openai_client_against_serve_matches_the_prediction(rpm, strategy, retry_after, limited, client_cpu):
    attempts = []
    for _ in range(ATTEMPTS):
        v = validate_http(llm(rpm, retry_after), strategy, client_cpu=client_cpu)
        p, m = v.predicted, v.measured
        attempts.append(v.error)
        assert (p.rate_limited > 0) == limited
        if (abs(v.error["t_total"]) <= 0.05 and _close(m.rate_limited, p.rate_limited)
                and _close(m.failed, p.failed) and _close(m.requests, p.requests)):
            return
    pytest.fail(f"openai client under {strategy}: off in every attempt: {attempts}")


def test_validate_client_from_the_command_line(tmp_path, capsys):
    model = tmp_path / "llm.yaml"
    model.write_text(json.dumps({"arrivals": {"batch": {"count": 12}}, "task": [{"call": "llm"}],
                                 "strategy": "asyncio:4",
                                 "services": {"llm": {"client": "openai-python", "latency": 0.05}}}))
    assert main(["validate", str(model), "--client", "openai", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["client"], out["measured"]["completed"], out["measured"]["requests"]) == ("openai", 12, 12)
    assert out["client_cpu_s"] > 0
    assert abs(out["error"]["t_total"]) < 0.25  # 12 calls of 50 ms: a smoke test of the path, not a bar
