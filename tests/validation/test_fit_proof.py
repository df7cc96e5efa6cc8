"""record → fit → predict another setting → run it for real (issue 15's proof, first part: services).

summarise.py (the openai client, 60 documents) is recorded for real against `asyncsim serve` at
CONCURRENCY=8; `fit` turns its call log into services (latency, tokens, the key's limit and burst from the
rate-limit headers, the retry-after mode); the twin then runs the same program with those services at
CONCURRENCY=4 and 16, and each is run (and recorded) for real: T_total within 10%, p95 within 15%. A miss
is measured again (up to ATTEMPTS times).
"""

from __future__ import annotations

import contextlib
import io

import pytest

from asyncsim import twin
from asyncsim.fitting import fit_service, read_calls, services_yaml
from asyncsim.real.http import serving
from asyncsim.record import record_program

from ..conftest import ROOT

pytestmark = pytest.mark.validation

PROGRAM = ROOT / "experiments" / "programs" / "summarise.py"
ATTEMPTS = 2


@pytest.mark.parametrize("other", ["4", "16"])
def test_a_model_fitted_from_one_run_predicts_another_setting(other, tmp_path, monkeypatch):
    pytest.importorskip("openai")
    truth = twin.load_services(PROGRAM.with_suffix(".yaml"))
    seen = []
    for k in range(ATTEMPTS):
        with serving(truth, seed=k) as (url, _log):
            monkeypatch.setenv("OPENAI_BASE_URL", url)
            monkeypatch.setenv("DOCS", "60")
            monkeypatch.setenv("CONCURRENCY", "8")
            with contextlib.redirect_stdout(io.StringIO()):
                record_program(PROGRAM, [], tmp_path / "seen")
                monkeypatch.setenv("CONCURRENCY", other)
                real = record_program(PROGRAM, [], tmp_path / "other")
        calls = read_calls(tmp_path / "seen" / "calls.jsonl")
        fitted = tmp_path / "fitted.yaml"
        fitted.write_text(services_yaml([fit_service(name, [c for c in calls if c.service == name])
                                         for name in dict.fromkeys(c.service for c in calls)], "calls.jsonl"))
        with contextlib.redirect_stdout(io.StringIO()):
            predicted = twin.run_program(PROGRAM, services=fitted, seed=k)
        t_err = predicted.t_total / real.t_total - 1
        p95_err = predicted.latency.p95 / real.latency.p95 - 1
        seen.append((round(t_err, 3), round(p95_err, 3)))
        if abs(t_err) <= 0.10 and abs(p95_err) <= 0.15:
            return
    pytest.fail(f"CONCURRENCY={other}: (T_total error, p95 error) per attempt: {seen}")
