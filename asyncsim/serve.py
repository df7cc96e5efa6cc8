"""`asyncsim serve`: an OpenAI-compatible API on loopback that behaves as a model's services say.

`POST /v1/chat/completions`, `POST /v1/embeddings` (and Anthropic's `POST /v1/messages`; any other request to
the default service, as a page) answer as the service named by the request's `model`
(or the default service) would: its server-side rate limit (429 with the `server.retry_after` header mode),
its cap on requests in flight (`server.concurrent_limit`), random 429s, 5xx and hanging requests
(`failures`), its latency (`latency`, or `ttft + tpot × (output tokens − 1)`) behind `concurrency` slots,
and its token counts (`usage`). The decisions are the simulator's own (`rules.limits` buckets and
`CallState`, `Server` headers, `rules.calls.attempt_outcome`, `charged_tokens`), taken in model seconds:
`time_scale` shrinks every duration and stretches every rate alike, so a run can be fast and keep its shape.

A request may carry the draws the simulator made for it (`"asyncsim": {"latency": s, "tokens_in": n,
"tokens_out": n, "u": uniform}`, sent by the openai client as `extra_body`), so a real client's run can be
compared with the prediction draw for draw; without them the server draws from the service's distributions
with its seeded generator. Each request is logged as one JSON line. Bad requests get an OpenAI-shaped 4xx.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError
from .real.service import ServiceSchedule
from .rules.calls import admit, attempt_outcome
from .rules.limits import CallState, buckets
from .services import RATE_LIMITED, SERVER_ERROR, TIMEOUT, Service
from .spec import Workload

__all__ = ["Answer", "Api", "EmulatedService", "Reply", "ServeOptions", "make_app", "serve"]


@dataclass(frozen=True)
class ServeOptions:
    """How `serve` runs: where it listens, its clock and generator, where it logs, when it stops."""

    host: str = "127.0.0.1"
    port: int = 8000
    service: str | None = None  # the service a request whose `model` names none goes to
    time_scale: float = 1.0
    seed: int = 0
    log: Path | None = None
    duration: float | None = None  # stop after this many real seconds
    max_requests: int | None = None  # stop after answering this many requests
    allow_remote: bool = False


@dataclass(frozen=True)
class Answer:
    """What the server decided for one request: HTTP status, headers, the wait before answering (model
    seconds), the tokens, and why (an outcome of `services.OUTCOMES`)."""

    status: int
    outcome: int
    wait: float
    tokens_in: int
    tokens_out: int
    retry_after: float | None = None
    accepted: bool = True  # the server took it (its quota spent, in flight until answered)
    limits: tuple[tuple[str, float, float, float], ...] = ()  # (requests|tokens, per minute, left, s to full)


class EmulatedService:
    """One service's server side on a model clock: buckets, cap, failures, latency, tokens.

    Raises:
        ModelError: a service `serve` cannot answer as an API (a batching service, a queue ordered by policy).
    """

    def __init__(self, name: str, spec: Service, rng: np.random.Generator) -> None:
        if spec.batching is not None:
            raise ModelError(f"services.{name}: serve answers API services (latency, or ttft and tpot); this one "
                             "has batching")
        if spec.policy.kind != "fifo":
            raise ModelError(f"services.{name}.policy: serve queues requests FIFO; got {spec.policy.kind}")
        self.name, self.spec, self.rng = name, spec, rng
        self.server = buckets(spec.rate_limit)
        self.state = CallState()
        self.schedule = ServiceSchedule(spec.concurrency)

    def _draws(self, given: dict[str, Any], max_tokens: int | None) -> tuple[float, int, int, float]:
        spec, rng = self.spec, self.rng
        tokens = spec.tokens
        t_in = given.get("tokens_in")
        if t_in is None:
            t_in = float(tokens.input.sample(rng, 1)[0]) if tokens is not None else 0.0
        t_out = given.get("tokens_out")
        if t_out is None:
            t_out = float(tokens.output.sample(rng, 1)[0]) if tokens is not None else 0.0
        cap = max_tokens if max_tokens is not None else (tokens.max_tokens if tokens is not None else None)
        if cap is not None:
            t_out = min(t_out, cap)
        latency = given.get("latency")
        if latency is None:
            if spec.latency is not None:
                latency = float(spec.latency.sample(rng, 1)[0])
            else:
                assert spec.ttft is not None
                assert spec.tpot is not None
                latency = (float(spec.ttft.sample(rng, 1)[0])
                           + float(spec.tpot.sample(rng, 1)[0]) * max(0.0, round(t_out) - 1))
        u = given.get("u")
        if u is None:
            u = float(rng.random())
        return float(latency), round(t_in), round(t_out), float(u)

    def decide(self, now: float, given: dict[str, Any], max_tokens: int | None = None) -> Answer:
        """The answer to a request arriving at model time `now` (the rules of `rules.calls.attempts`, server
        side). An accepted request is in flight until `finished()`."""
        spec = self.spec
        latency, t_in, t_out, u = self._draws(given, max_tokens)
        outcome, header, entered = admit(spec, self.server, self.state, now, t_in, t_out)
        limits = self._limits(now)
        if outcome == RATE_LIMITED:
            return Answer(429, RATE_LIMITED, 0.0, t_in, t_out, header, accepted=False, limits=limits)
        if not entered:  # no cap: count it in flight all the same (the log, `finished`)
            self.state.enter()
        outcome = attempt_outcome(spec.failures, u)
        if outcome == RATE_LIMITED:  # a drawn 429 carries no retry-after
            return Answer(429, outcome, 0.0, t_in, t_out, limits=limits)
        if outcome == TIMEOUT:  # the request hangs: the client's timeout cuts it
            hang = 2 * spec.timeout if spec.timeout is not None else 600.0
            return Answer(504, outcome, hang, t_in, t_out, limits=limits)
        _start, end = self.schedule.reserve(now, latency)
        return Answer(500 if outcome == SERVER_ERROR else 200, outcome, end - now, t_in, t_out, limits=limits)

    def _limits(self, now: float) -> tuple[tuple[str, float, float, float], ...]:
        """The rate limit's state after this request, for the `x-ratelimit-*` headers providers send."""
        limit = self.spec.rate_limit
        if self.server is None or limit is None:
            return ()
        out = []
        kinds = (("requests", self.server[0], limit.rpm), ("tokens", self.server[1], limit.tpm))
        for kind, bucket, per_minute in kinds:
            if bucket is not None and per_minute is not None:
                level = bucket.level(now)
                out.append((kind, per_minute, max(0.0, level), (bucket.capacity - level) / bucket.rate))
        return tuple(out)

    def finished(self, answer: Answer) -> None:
        """A request was answered: an accepted one leaves the server's count in flight."""
        if answer.accepted:
            self.state.leave()


def _error(message: str, kind: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _headers(answer: Answer, scale: float) -> dict[str, str]:
    """The answer's headers: its outcome, and a 429's retry-after in real seconds (and milliseconds, which
    openai-python reads first); a whole number of model seconds stays whole at time scale 1."""
    headers = {"x-asyncsim-outcome": str(answer.outcome)}
    for kind, per_minute, left, to_full in answer.limits:  # as OpenAI sends them (reset: until the bucket is full)
        headers[f"x-ratelimit-limit-{kind}"] = f"{per_minute:g}"
        headers[f"x-ratelimit-remaining-{kind}"] = f"{math.floor(left):d}"
        headers[f"x-ratelimit-reset-{kind}"] = f"{to_full * scale:.3f}s"
    if answer.retry_after is not None:
        real = answer.retry_after * scale
        headers["retry-after"] = f"{real:g}"
        headers["retry-after-ms"] = f"{real * 1000:g}"
    return headers


def _attempt_draws(hints: dict[str, Any], headers: Any, tried: dict[tuple[Any, Any], int]) -> dict[str, Any]:
    """The draws for this attempt of a request that carries the simulator's (`attempts`: [latency, uniform]
    per attempt): which attempt it is comes from openai-python's `x-stainless-retry-count` header, else by
    counting the requests of its (task, step)."""
    attempts = hints.get("attempts")
    if not isinstance(attempts, list) or not attempts:
        return hints
    key = (hints.get("task"), hints.get("step"))
    header = headers.get("x-stainless-retry-count")
    k = int(header) if header is not None and header.isdigit() else tried.get(key, 0)
    tried[key] = k + 1
    latency, u = attempts[min(k, len(attempts) - 1)][:2]  # a third number, the client's jitter, is not ours
    return {**hints, "latency": latency, "u": u}


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Reply:
    """What the API answers one request: after `wait` model seconds, `status` with `headers` (real seconds at
    the time scale) and the JSON `payload`; `answer` (None for a malformed request) and the service's name."""

    status: int
    headers: dict[str, str]
    payload: dict[str, Any]
    wait: float = 0.0
    answer: Answer | None = None
    service: str | None = None


class Api:
    """The emulated API of a workload's services, answering OpenAI-shaped requests in model seconds — one
    implementation for `serve` (on a real clock) and `asyncsim twin` (on a virtual one).

    Raises:
        ModelError: no service to serve, an unknown default `service`, or a service it cannot emulate.
    """

    def __init__(self, workload: Workload, *, seed: int = 0, service: str | None = None,
                 time_scale: float = 1.0) -> None:
        if not workload.services:
            raise ModelError("serve: the model has no services to answer as")
        if service is not None and service not in workload.services:
            raise ModelError(f"--service: no service {service!r} (the model has: {', '.join(workload.services)})")
        rng = np.random.default_rng(seed)
        self.services = {name: EmulatedService(name, spec, rng) for name, spec in workload.services.items()}
        self.default = service or (next(iter(self.services)) if len(self.services) == 1 else None)
        self.scale = time_scale
        self.answered = 0
        self.tried: dict[tuple[Any, Any], int] = {}  # attempts per (task, step), for clients that do not number

    def models(self) -> dict[str, Any]:
        """`GET /v1/models`."""
        return {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "asyncsim"}
                                           for n in self.services]}

    def handle(self, kind: str, raw: bytes, headers: Any, now: float, default: str | None = None) -> Reply:
        """The reply to a `chat` (OpenAI chat completions), `messages` (Anthropic's) or `embeddings` request
        with body `raw` arriving at model time `now` (or, kind `other`, any request to the `default` service:
        a page a crawler fetches); an accepted request stays in flight until `finished(reply)`. A bad request
        gets an OpenAI-shaped 4xx."""
        if kind == "other":
            name = default or self.default
            if name is None:
                return Reply(404, {}, _error("no service answers this host", "invalid_request_error"))
            return self._decided(kind, name, name, {}, {}, None, now)
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return Reply(400, {}, _error("the body is not JSON", "invalid_request_error"))
        if not isinstance(body, dict):
            return Reply(400, {}, _error("the body must be a JSON object", "invalid_request_error"))
        model = body.get("model")
        needs = "input" if kind == "embeddings" else "messages"
        if not isinstance(model, str) or needs not in body:
            return Reply(400, {}, _error(f"give 'model' (a string) and '{needs}'", "invalid_request_error"))
        if body.get("stream"):
            return Reply(400, {}, _error("stream: true is not answered yet (asyncsim models a response as a whole); "
                                         "ask without streaming", "invalid_request_error", "stream_unsupported"))
        name = model if model in self.services else (default or self.default)
        if name is None:
            return Reply(404, {}, _error(f"The model '{model}' does not exist (serving: {', '.join(self.services)})",
                                         "invalid_request_error", "model_not_found"))
        hints = body.get("asyncsim")
        given: dict[str, Any] = _attempt_draws(hints, headers, self.tried) if isinstance(hints, dict) else {}
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        return self._decided(kind, name, model, body, given, max_tokens if isinstance(max_tokens, int) else None,
                             now)

    def _decided(self, kind: str, name: str, model: str, body: dict[str, Any], given: dict[str, Any],
                 max_tokens: int | None, now: float) -> Reply:
        answer = self.services[name].decide(now, given, max_tokens)
        self.answered += 1
        out = _headers(answer, self.scale)
        if answer.status == 429:
            payload = _error(f"Rate limit reached for {name}: try again later", "requests", "rate_limit_exceeded")
        elif answer.status >= 500:
            payload = _error("The server had an error while processing your request", "server_error")
        elif kind == "other":
            payload = {"object": "asyncsim.page", "service": name, "tokens": answer.tokens_out}
        elif kind == "messages":  # Anthropic's Messages API
            payload = {"id": f"msg_asyncsim_{self.answered}", "type": "message", "role": "assistant",
                       "model": model, "stop_reason": "end_turn", "stop_sequence": None,
                       "content": [{"type": "text", "text": "ok " * max(1, min(answer.tokens_out, 64))}],
                       "usage": {"input_tokens": answer.tokens_in, "output_tokens": answer.tokens_out}}
        elif kind == "embeddings":
            items = body["input"] if isinstance(body["input"], list) else [body["input"]]
            payload = {"object": "list", "model": model, "usage": _usage(answer, chat=False),
                       "data": [{"object": "embedding", "index": k, "embedding": [0.0] * 8}
                                for k in range(len(items))]}
        else:
            payload = {
                "id": f"chatcmpl-asyncsim-{self.answered}", "object": "chat.completion", "created": int(time.time()),
                "model": model, "usage": _usage(answer, chat=True),
                "choices": [{"index": 0, "finish_reason": "stop", "message": {
                    "role": "assistant", "content": "ok " * max(1, min(answer.tokens_out, 64))}}]}
        return Reply(answer.status, out, payload, answer.wait, answer, name)

    def finished(self, reply: Reply) -> None:
        """A reply was sent (or its client went away): an accepted request is no longer in flight."""
        if reply.answer is not None and reply.service is not None:
            self.services[reply.service].finished(reply.answer)


def _usage(answer: Answer, *, chat: bool) -> dict[str, int]:
    usage = {"prompt_tokens": answer.tokens_in, "total_tokens": answer.tokens_in + answer.tokens_out}
    if chat:
        usage["completion_tokens"] = answer.tokens_out
    return usage


def make_app(workload: Workload, options: ServeOptions, stop: asyncio.Event | None = None) -> Any:
    """The aiohttp application serving `workload`'s services (`stop` is set when it should shut down).

    Raises:
        ModelError: no service to serve, an unknown `--service`, or a service it cannot emulate.
    """
    from aiohttp import web

    api = Api(workload, seed=options.seed, service=options.service, time_scale=options.time_scale)
    scale = options.time_scale
    t0 = time.perf_counter()
    log_file = options.log.open("a", encoding="utf-8") if options.log is not None else None

    def model_now() -> float:
        return (time.perf_counter() - t0) / scale

    async def handle(request: web.Request, kind: str) -> web.Response:
        arrived = model_now()
        reply = api.handle(kind, await request.read(), request.headers, arrived)
        try:
            if reply.wait > 0:
                await asyncio.sleep(reply.wait * scale)
        finally:  # answered, or the client went away: either way it is no longer in flight
            api.finished(reply)
        if log_file is not None and reply.answer is not None:
            answer = reply.answer
            log_file.write(json.dumps({"t": round(arrived, 6), "end": round(model_now(), 6),
                                       "service": reply.service, "status": answer.status,
                                       "tokens_in": answer.tokens_in, "tokens_out": answer.tokens_out,
                                       "retry_after": answer.retry_after}) + "\n")
            log_file.flush()
        if stop is not None and options.max_requests is not None and api.answered >= options.max_requests:
            stop.set()
        return web.json_response(reply.payload, status=reply.status, headers=reply.headers)

    async def chat(request: web.Request) -> web.Response:
        return await handle(request, "chat")

    async def embeddings(request: web.Request) -> web.Response:
        return await handle(request, "embeddings")

    async def messages(request: web.Request) -> web.Response:  # Anthropic's Messages API
        return await handle(request, "messages")

    async def models(_request: web.Request) -> web.Response:
        return web.json_response(api.models())

    async def other(request: web.Request) -> web.Response:  # a page: the default service answers it
        return await handle(request, "other")

    async def closing(_app: web.Application) -> None:
        if log_file is not None:
            log_file.close()

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/messages", messages)
    app.router.add_get("/v1/models", models)
    app.router.add_route("*", "/{path:.*}", other)
    app.on_cleanup.append(closing)
    return app


async def serve(workload: Workload, options: ServeOptions, *, ready: asyncio.Event | None = None,
                stop: asyncio.Event | None = None, bound: list[int] | None = None) -> None:
    """Serve `workload` until `stop` is set, `options.duration` passes or `options.max_requests` are answered
    (Ctrl-C stops it too). `ready` is set once it listens; the port it got is appended to `bound`.

    Raises:
        ModelError: a host that is not loopback without `allow_remote`, or a model it cannot serve.
    """
    from aiohttp import web

    if not options.allow_remote and not _loopback(options.host):
        raise ModelError(f"--host: {options.host} is not a loopback address; serve listens on 127.0.0.1 unless "
                         "--allow-remote is given")
    stop = stop or asyncio.Event()
    app = make_app(workload, options, stop)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, options.host, options.port)
    await site.start()
    if bound is not None:
        server = site._server  # noqa: SLF001 - the bound port when asked for port 0
        assert server is not None
        bound.append(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
    if ready is not None:
        ready.set()
    try:
        if options.duration is not None:
            await asyncio.wait_for(stop.wait(), options.duration)
        else:
            await stop.wait()
    except TimeoutError:
        pass
    finally:
        await runner.cleanup()
