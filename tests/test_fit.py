"""`asyncsim fit`: distributions chosen by AIC with a KS check, and services fitted from a call log (issue 15)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import asyncsim as a
from asyncsim.cli import main
from asyncsim.errors import ModelError
from asyncsim.fitting import fit_service, read_calls, select, services_yaml
from asyncsim.serve import Api
from asyncsim.twin import load_services


@pytest.mark.parametrize(("family", "draw"), [
    ("lognormal", lambda rng: rng.lognormal(np.log(0.3), 0.3, 2000)),
    ("gamma", lambda rng: rng.gamma(2.0, 0.05, 2000)),  # cv 0.71: far from a lognormal's shape
    ("exponential", lambda rng: rng.exponential(0.05, 2000)),
])
def test_select_keeps_the_family_the_samples_came_from(family, draw):
    samples = draw(np.random.default_rng(7))
    fitted = select(samples)
    assert fitted.family == family
    assert fitted.dist.mean == pytest.approx(samples.mean(), rel=0.05)
    assert fitted.ks_p is not None
    assert fitted.ks_p >= 0.01
    assert set(fitted.aic) == {"lognormal", "gamma", "exponential"}
    assert min(fitted.aic, key=fitted.aic.get) == family


def test_select_falls_back_to_the_samples_or_a_constant():
    rng = np.random.default_rng(3)
    bimodal = np.concatenate([rng.normal(0.1, 0.005, 500), rng.normal(1.0, 0.02, 500)])
    assert select(bimodal).family == "empirical"  # no family passes KS: the samples themselves
    assert select([0.25] * 10).yaml() == 0.25
    with pytest.raises(ModelError, match="at least two finite samples >= 0"):
        select([1.0, -1.0])


def _log(tmp_path, n: int = 400, **extra) -> tuple[str, a.Service]:
    """A call log drawn by serve's own API from a known service (ttft lognormal 0.3 s, cv 0.3; 4 ms a token)."""
    spec = {"ttft": {"lognormal": {"mean": 0.3, "cv": 0.3}}, "tpot": 0.004,
            "tokens": {"input": {"gamma": {"mean": 450, "cv": 0.2}},
                       "output": {"lognormal": {"mean": 90, "cv": 0.3}}}, **extra}
    service = a.Service.model_validate(spec)
    api = Api(a.Workload(arrivals=a.Batch(count=1), task=(a.io(0.0),), services={"llm": service}), seed=1)
    rows = []
    for i in range(n):
        reply = api.handle("chat", json.dumps({"model": "llm", "messages": []}).encode(), {}, float(i) / 10)
        assert reply.answer is not None
        api.finished(reply)
        rows.append({"t": i / 10, "duration": reply.wait, "model": "llm", "status": reply.status,
                     "usage": {"prompt_tokens": reply.answer.tokens_in,
                               "completion_tokens": reply.answer.tokens_out},
                     "retry_after": reply.answer.retry_after})
    path = tmp_path / "calls.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path), service


def test_a_service_is_recovered_from_its_call_log(tmp_path):
    path, _ = _log(tmp_path)
    fit = fit_service("llm", read_calls(path))
    assert (fit.attempts, fit.ok, fit.rate_limited) == (400, 400, 0)
    assert fit.ttft is not None
    assert fit.ttft.family == "lognormal"
    assert fit.ttft.dist.mean == pytest.approx(0.3, rel=0.05)
    assert fit.tpot == pytest.approx(0.004, rel=0.05)
    assert fit.tokens_in.family in ("gamma", "lognormal")  # at cv 0.2 the two are hard to tell apart
    assert fit.tokens_in.dist.mean == pytest.approx(450, rel=0.03)
    assert fit.tokens_out.dist.mean == pytest.approx(90, rel=0.05)
    # the block is a services file the twin (and a model) reads, every number commented with its source
    out = tmp_path / "llm.yaml"
    out.write_text(services_yaml([fit], "calls.jsonl"))
    svc = load_services(out).services["llm"]
    assert svc.tpot.mean == pytest.approx(0.004, rel=0.05)
    assert "KS p" in out.read_text()


def test_429s_and_the_limit_the_log_carries(tmp_path):
    path, _ = _log(tmp_path, n=300, rate_limit={"rpm": 120, "burst_requests": 2},
                   server={"retry_after": "ceil_seconds"})
    fit = fit_service("llm", read_calls(path))
    assert fit.rate_limited > 0
    assert fit.retry_after == "ceil_seconds"
    assert fit.rpm is None  # no header values in this log: said in the YAML, not guessed
    assert "set rate_limit (rpm, tpm) yourself" in services_yaml([fit], "calls.jsonl")
    with open(path) as lines:
        rows = [json.loads(line) | {"ratelimit_limit_requests": 120} for line in lines]
    (tmp_path / "h.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    assert fit_service("llm", read_calls(tmp_path / "h.jsonl")).rpm == 120


def test_the_command_writes_the_services_file_and_its_report(tmp_path, capsys):
    path, _ = _log(tmp_path, n=200)
    out, report = tmp_path / "fitted.yaml", tmp_path / "report"
    assert main(["fit", path, "--out", str(out), "--report", str(report)]) == 0
    assert "tpot: 0.004" in out.read_text()
    text = (report / "report.md").read_text()
    assert "| ttft | " in text  # lognormal or gamma: at cv 0.3 and 200 samples their AICs differ by < 1
    assert (report / "cdf_llm.png").stat().st_size > 1000
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"t": 0, "end": 1, "status": 200}\n{"t": "soon", "status": 200}\n')
    assert main(["fit", str(bad), "--out", str(tmp_path / "x.yaml")]) == 2
    assert "bad.jsonl: line 2: t must be a number (got 'soon')" in capsys.readouterr().err


def test_the_module_leaves_the_packages_fit_function_alone():
    """`asyncsim.fit` is `dists.fit` (a function); this module is `asyncsim.fitting`, so importing it does not
    replace the function with a module."""
    import asyncsim.fitting  # noqa: F401

    assert a.fit([1.0, 2.0, 2.0], "empirical").mean == pytest.approx(5 / 3)


def _spans(rows: list[dict], host: str = "api.openai.com") -> dict:
    """rows of a call log as an OTLP JSON export: one CLIENT span per attempt, GenAI and HTTP attributes, beside
    an internal span that is not a call."""
    t0 = 1_700_000_000 * 10**9

    def attr(key, value):
        return {"key": key, "value": {"intValue": str(value)} if isinstance(value, int) else {"stringValue": value}}

    spans = [{"name": "work", "kind": 1, "startTimeUnixNano": str(t0), "endTimeUnixNano": str(t0 + 10**9)}]
    for r in rows:
        start = t0 + round(r["t"] * 1e9)
        spans.append({"name": "chat gpt-4o-mini", "kind": "SPAN_KIND_CLIENT", "startTimeUnixNano": str(start),
                      "endTimeUnixNano": str(start + round(r["duration"] * 1e9)),
                      "attributes": [attr("server.address", host), attr("http.response.status_code", r["status"]),
                                     attr("gen_ai.usage.input_tokens", r["usage"]["prompt_tokens"]),
                                     attr("gen_ai.usage.output_tokens", r["usage"]["completion_tokens"])]})
    return {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"scope": {"name": "openai"},
                                                                                 "spans": spans}]}]}


def test_opentelemetry_spans_are_read_as_calls(tmp_path, capsys):
    path, _ = _log(tmp_path)  # the draws the call-log test recovers the service from
    rows = [json.loads(line) for line in Path(path).read_text().splitlines()]
    export = tmp_path / "spans.json"
    export.write_text(json.dumps(_spans(rows)))
    calls = read_calls(export, "otlp")
    assert len(calls) == 400  # the internal span is not a call
    assert {c.service for c in calls} == {"api.openai.com"}
    assert calls[1].sent == pytest.approx(0.1)
    fit = fit_service("api.openai.com", calls)
    assert fit.tpot == pytest.approx(0.004, rel=0.05)
    assert fit.ttft is not None
    assert fit.ttft.dist.mean == pytest.approx(0.3, rel=0.05)
    out = tmp_path / "otel.yaml"
    assert main(["fit", str(export), "--format", "otlp", "--out", str(out), "--report", str(tmp_path / "r")]) == 0
    assert "openai:" in out.read_text()  # named by its host, answered there by the twin
    assert "host: api.openai.com" in out.read_text()
    export.write_text(json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": _spans(rows)["resourceSpans"][0]
                                                                      ["scopeSpans"][0]["spans"][:1]}]}]}))
    assert main(["fit", str(export), "--format", "otlp", "--out", str(out)]) == 2
    assert "holds no client spans of API calls" in capsys.readouterr().err
    export.write_text('{"traces": []}')
    assert main(["fit", str(export), "--format", "otlp", "--out", str(out)]) == 2
    assert "document 1: not an OTLP trace export" in capsys.readouterr().err
