"""`asyncsim serve`: the emulated server's decisions (the simulator's rules, server side) and the HTTP API on
loopback that answers as the model's services say: OpenAI-shaped bodies, 429s with the server's retry-after,
the cap on requests in flight, 4xx for bad requests, the request log, and stopping by itself."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import numpy as np
import pytest

import asyncsim as a
from asyncsim.errors import ModelError
from asyncsim.serve import EmulatedService, ServeOptions, serve


def _llm(**fields) -> a.Service:
    spec = {"ttft": 0.01, "tpot": 0.001, "tokens": {"input": 100, "output": 20}} | fields
    return a.Service.model_validate(spec)


def _model(**services: a.Service) -> a.Workload:
    return a.Workload(arrivals=a.Batch(count=1), task=(a.call(next(iter(services))),), services=services)


# ------------------------------------------------------------------------------ the server's decisions


def test_decisions_follow_the_rate_limit_and_its_retry_after_mode():
    svc = EmulatedService("llm", _llm(rate_limit={"rpm": 60, "burst_requests": 2},
                                      server={"retry_after": "ceil_seconds"}), np.random.default_rng(0))
    first, second, third = (svc.decide(0.0, {}) for _ in range(3))
    assert (first.status, second.status, third.status) == (200, 200, 429)
    assert third.retry_after == 1.0  # 1 s to refill one request, whole seconds
    assert first.wait == pytest.approx(0.01 + 0.001 * 19)  # ttft + tpot x (20 - 1)
    assert (first.tokens_in, first.tokens_out) == (100, 20)
    later = svc.decide(1.0, {})
    assert later.status == 200


def test_decisions_cap_requests_in_flight_and_take_the_simulators_draws():
    svc = EmulatedService("llm", _llm(server={"concurrent_limit": 2}), np.random.default_rng(0))
    hints = {"latency": 0.5, "tokens_in": 7, "tokens_out": 3, "u": 0.5}
    one, two, three = (svc.decide(0.0, hints) for _ in range(3))
    assert [x.status for x in (one, two, three)] == [200, 200, 429]
    assert (one.wait, one.tokens_in, one.tokens_out, three.retry_after) == (0.5, 7, 3, None)
    svc.finished(one)
    svc.finished(three)  # a refused request was never in flight
    assert svc.decide(0.1, hints).status == 200
    assert svc.decide(0.1, hints).status == 429


def test_a_drawn_5xx_and_max_tokens():
    svc = EmulatedService("llm", _llm(failures={"server_error": 0.5}), np.random.default_rng(0))
    assert svc.decide(0.0, {"u": 0.2}).status == 500
    assert svc.decide(0.0, {"u": 0.7}, max_tokens=5).tokens_out == 5


def test_services_serve_cannot_emulate_are_refused_with_the_field_named():
    batching = a.Service(batching={"max_batch": 4})
    with pytest.raises(ModelError, match=r"services.gpu: serve answers API services"):
        EmulatedService("gpu", batching, np.random.default_rng(0))


# ---------------------------------------------------------------------------------------- over HTTP


def _serving(workload: a.Workload, client, **options):
    """Run `client(base_url)` against `serve` on a free loopback port; returns what it returned."""
    async def main():
        ready, stop, bound = asyncio.Event(), asyncio.Event(), []
        opts = ServeOptions(port=0, duration=30.0, **options)
        server = asyncio.create_task(serve(workload, opts, ready=ready, stop=stop, bound=bound))
        await asyncio.wait({server, asyncio.create_task(ready.wait())}, return_when=asyncio.FIRST_COMPLETED)
        if server.done():
            server.result()  # raises what stopped it
        try:
            async with aiohttp.ClientSession(f"http://127.0.0.1:{bound[0]}") as session:
                return await client(session)
        finally:
            stop.set()
            await server
    return asyncio.run(main())


CHAT = {"model": "llm", "messages": [{"role": "user", "content": "hi"}]}


def test_chat_completions_answer_with_usage_and_a_429_with_retry_after(tmp_path: Path):
    log = tmp_path / "requests.jsonl"
    w = _model(llm=_llm(rate_limit={"rpm": 60, "burst_requests": 1}, server={"retry_after": "ceil_seconds"}))

    async def client(session: aiohttp.ClientSession):
        async with session.post("/v1/chat/completions", json=CHAT) as ok:
            body = await ok.json()
            assert ok.status == 200
        async with session.post("/v1/chat/completions", json=CHAT) as limited:
            return body, limited.status, {k.lower(): v for k, v in limited.headers.items()}, await limited.json()

    body, status, headers, error = _serving(w, client, log=log)
    assert body["object"] == "chat.completion"
    assert body["usage"] == {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    assert (status, headers["retry-after"], headers["retry-after-ms"]) == (429, "1", "1000")
    # the bucket's state as providers report it: 60 per minute, none left, 1 s until full again
    assert (headers["x-ratelimit-limit-requests"], headers["x-ratelimit-remaining-requests"]) == ("60", "0")
    assert float(headers["x-ratelimit-reset-requests"].removesuffix("s")) == pytest.approx(1.0, abs=0.05)
    assert error["error"]["code"] == "rate_limit_exceeded"
    assert "Rate limit" in error["error"]["message"]  # what the cookbook processor looks for
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [row["status"] for row in lines] == [200, 429]
    assert lines[1]["retry_after"] == 1.0


def test_the_cap_on_requests_in_flight_refuses_the_one_too_many():
    w = _model(llm=_llm(ttft=0.3, server={"concurrent_limit": 3}))

    async def client(session: aiohttp.ClientSession):
        async def one():
            async with session.post("/v1/chat/completions", json=CHAT) as r:
                return r.status, r.headers.get("retry-after")
        return await asyncio.gather(*(one() for _ in range(4)))

    answers = _serving(w, client)
    assert sorted(s for s, _ in answers) == [200, 200, 200, 429]
    assert [h for s, h in answers if s == 429] == [None]  # the cap cannot say when a slot frees


def test_bad_requests_get_openai_shaped_4xx_never_a_crash():
    w = _model(llm=_llm(), embed=a.Service(latency=0.01))

    async def client(session: aiohttp.ClientSession):
        out = []
        for body in (b"{not json", json.dumps({"model": "llm"}).encode(), json.dumps({"model": "gpt-x",
                                                                                    "messages": []}).encode()):
            async with session.post("/v1/chat/completions", data=body) as r:
                out.append((r.status, (await r.json())["error"]["type"]))
        async with session.post("/v1/embeddings", json={"model": "embed", "input": ["a", "b"]}) as r:
            out.append((r.status, len((await r.json())["data"])))
        return out

    assert _serving(w, client) == [(400, "invalid_request_error"), (400, "invalid_request_error"),
                                   (404, "invalid_request_error"), (200, 2)]


def test_serve_listens_on_loopback_only_unless_told_and_stops_by_itself():
    w = _model(llm=_llm())
    with pytest.raises(ModelError, match=r"--host: 0.0.0.0 is not a loopback address"):
        asyncio.run(serve(w, ServeOptions(host="0.0.0.0", port=0)))

    async def client(session: aiohttp.ClientSession):
        for _ in range(2):
            async with session.post("/v1/chat/completions", json=CHAT) as r:
                assert r.status == 200
        return "ok"

    assert _serving(w, client, max_requests=2) == "ok"


def test_http_validation_refuses_what_a_client_cannot_run_naming_the_field():
    from asyncsim.real.http import check_http
    from asyncsim.scenario import build_scenario

    limited = a.Service(latency=0.1, client_limit=a.RateLimit(rpm=60))
    w = a.Workload(arrivals=a.Batch(count=2), task=(a.call("llm"),), services={"llm": limited})
    with pytest.raises(ModelError, match=r"services.llm.client_limit: the httpx client has no limiter"):
        check_http(build_scenario(w, strategy="asyncio"), "httpx")
    check_http(build_scenario(w, strategy="asyncio"), "cookbook")  # the cookbook processor has one
    with pytest.raises(ModelError, match=r"cookbook processor sends a file of requests .* strategy asyncio"):
        check_http(build_scenario(w, strategy="asyncio:4"), "cookbook")
    plain = w.model_copy(update={"services": {"llm": a.Service(latency=0.1)}})
    with pytest.raises(ModelError, match=r"services.llm.client_limit: the cookbook processor has its own limiter"):
        check_http(build_scenario(plain, strategy="asyncio"), "cookbook")
    two = plain.model_copy(update={"task": (a.call("llm"), a.io(0.1))})
    with pytest.raises(ModelError, match=r"tasks of one call step"):
        check_http(build_scenario(two, strategy="asyncio"), "cookbook")
