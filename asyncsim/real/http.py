"""HTTP validation: a model's tasks run by a REAL client library against `asyncsim serve`, compared with the
prediction.

The server runs in a forked process (its CPU is not the client's), answering as the model's services say and
taking the simulator's draws for each request (latency, tokens and failure uniform per attempt, sent in the
request body; the attempt number from the client's `x-stainless-retry-count` header or, for other clients,
by counting). The client side is an asyncio program as users write it: tasks created at their arrival times,
`asyncio.Semaphore(K)` for `asyncio:K`, each `call` one `client.chat.completions.create(...)` of the openai
package with its own retries and back-off, each `io` an `asyncio.sleep`, each `cpu` calibrated Python on the
loop. Attempts, 429s and failures are read from the server's request log.

Real seconds only (time scale 1): the client's back-off constants are its own and do not scale.
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from ..rules.calls import backoff_s, charged_tokens
from ..scenario import CALL, CPU, IO, Scenario
from ..serve import ServeOptions, serve
from ..services import ATTEMPT_FIELDS, CALL_HEAD, Service
from ..spec import Batch, Workload, call
from .cpuwork import CpuWork, measure_rate

__all__ = ["CLIENTS", "HttpRun", "check_http", "library_of", "measure_client_cpu", "run_http", "serving"]

CLIENTS = ("openai", "httpx", "aiohttp", "cookbook")
"""What `--client` runs: the openai package; httpx or aiohttp with a retry loop as users write it; the OpenAI
cookbook's parallel processor (its algorithm, written here, sending with aiohttp)."""


def library_of(client: str) -> str:
    """The library whose CPU per request a client spends (the key of a machine profile's `client_cpu_s`)."""
    return "aiohttp" if client == "cookbook" else client


@dataclass(frozen=True)
class HttpRun:
    """What a real client's run measured: T_total, tasks completed and failed, and from the server's log the
    requests (attempts) and 429s."""

    t_total: float
    completed: int
    failed: int
    requests: int
    rate_limited: int
    done: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """The figures, as JSON."""
        return {"t_total": self.t_total, "completed": self.completed, "failed": self.failed,
                "requests": self.requests, "rate_limited": self.rate_limited}


def check_http(scenario: Scenario, client: str = "openai") -> None:
    """Refuse (ModelError) what HTTP validation with `client` cannot run: see the messages."""
    strategy = scenario.strategy
    if not strategy.on_loop or strategy.executor is not None:
        raise ModelError(f"--client: HTTP validation runs asyncio or asyncio:K (the client library's own loop); "
                         f"got {strategy}")
    if scenario.arrivals is None:
        raise ModelError("--client: HTTP validation needs open arrivals (batch, poisson, periodic or trace)")
    for program in scenario.programs:
        for node in program.steps:
            if node.kind not in (CALL, IO, CPU):
                raise ModelError(f"--client: HTTP validation runs tasks made of call, io and cpu steps; task "
                                 f"{program.name!r} has another kind of step")
    services = scenario.workload.services
    for name, svc in services.items():
        if svc.batching is not None or svc.policy.kind != "fifo":
            raise ModelError(f"services.{name}: HTTP validation emulates API services (no batching, FIFO)")
        aiolimiter = svc.client is not None and "aiolimiter" in svc.client.split("+")
        if client != "cookbook" and svc.client_limit is not None and not aiolimiter:
            raise ModelError(f"services.{name}.client_limit: the {client} client has no limiter (the cookbook "
                             "processor has one: --client cookbook; or put aiolimiter in front of it: client: "
                             "openai-python+aiolimiter)")
        if client == "openai" and aiolimiter and svc.client_limit is not None and svc.client_limit.per != "call":
            raise ModelError(f"services.{name}.client_limit.per: around the openai client a limiter is taken once "
                             "per call (its retries are inside the call): per: call")
    if client == "cookbook":
        one_call = all(len(p.steps) == 1 and p.steps[0].kind == CALL for p in scenario.programs)
        if len(services) != 1 or not one_call or strategy.admission is not None:
            raise ModelError("--client cookbook: the cookbook processor sends a file of requests to one service: "
                             "tasks of one call step, strategy asyncio (it has no concurrency limit)")
        (name, svc), = services.items()
        if svc.client_limit is None or svc.client_limit.policy.kind != "fifo":
            raise ModelError(f"services.{name}.client_limit: the cookbook processor has its own limiter (FIFO): "
                             "give client_limit (rpm and/or tpm; client: openai-cookbook-processor sets the rest)")


def _serve_main(workload: Any, seed: int, log: str, port: Any) -> None:  # pragma: no cover - a child process
    async def main() -> None:
        bound: list[int] = []
        ready = asyncio.Event()
        task = asyncio.create_task(serve(workload, ServeOptions(port=0, seed=seed, log=Path(log),
                                                                duration=3600.0), ready=ready, bound=bound))
        await ready.wait()
        port.value = bound[0]
        await task

    asyncio.run(main())


@contextmanager
def serving(workload: Workload, seed: int = 0) -> Iterator[tuple[str, Path]]:
    """`serve` for `workload` in a forked child process on a free loopback port: yields its base URL and the
    path of its request log, and stops it on leaving.

    Raises:
        ModelError: it did not start within 30 s.
    """
    ctx = multiprocessing.get_context("fork")
    port = ctx.Value("i", 0)
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "requests.jsonl"
        server = ctx.Process(target=_serve_main, args=(workload, seed, str(log), port), daemon=True)
        server.start()
        try:
            deadline = time.monotonic() + 30
            while port.value == 0:
                if not server.is_alive() or time.monotonic() > deadline:
                    raise ModelError("serve did not start (see its error above)")
                time.sleep(0.01)
            yield f"http://127.0.0.1:{port.value}/v1", log
        finally:
            server.terminate()
            server.join(5)


def _hints(scenario: Scenario, i: int, node_id: int, col: int, attempts: int) -> dict[str, Any]:
    """The simulator's draws for task i's call `node_id`: its tokens, and per attempt (latency, failure
    uniform, jitter uniform), in the layout of `services.call_width`."""
    durs = scenario.durations[scenario.task_type[i]][scenario.task_row[i]]
    if col < 0:  # a plain call: its latency is the node's own draw
        return {"task": i, "step": node_id, "attempts": [[float(durs[node_id]), 1.0, 0.0]]}
    heads = [col + CALL_HEAD + ATTEMPT_FIELDS * k for k in range(attempts)]
    return {"task": i, "step": node_id, "tokens_in": float(durs[col]), "tokens_out": float(durs[col + 1]),
            "attempts": [[float(durs[at]), float(durs[at + 1]), float(durs[at + 2])] for at in heads]}


class CallFailedError(Exception):
    """A call the client gave up on (out of attempts, or not retryable)."""


def _body(service: str, hints: dict[str, Any]) -> dict[str, Any]:
    """A chat completion request carrying the simulator's draws for `serve`."""
    return {"model": service, "messages": [{"role": "user", "content": f"task {hints['task']}"}], "asyncsim": hints}


class _Limiter:
    """aiolimiter's AsyncLimiter in front of a service's calls, as the model's `client_limit` says (a client
    profile with `aiolimiter`): one for requests, one for tokens, taken per call or per attempt."""

    def __init__(self, service: Service) -> None:
        from aiolimiter import AsyncLimiter

        limit = service.client_limit
        assert limit is not None  # check_http requires it
        self.service, self.per = service, limit.per
        self.limiters = [None if b is None else AsyncLimiter(b[1], b[1] / b[0]) for b in limit.buckets()]

    async def take(self, hints: dict[str, Any], attempt: int) -> None:
        """Wait for the limiter before attempt `attempt` of a call (at once when it is not taken then)."""
        if attempt and self.per == "call":
            return
        requests, tokens = self.limiters
        if requests is not None:
            await requests.acquire(1)
        if tokens is not None:
            limit = self.service.client_limit
            assert limit is not None
            await tokens.acquire(charged_tokens(self.service, limit, hints.get("tokens_in", 0.0),
                                                hints.get("tokens_out", 0.0)))


def _limiters(services: dict[str, Service]) -> dict[str, _Limiter]:
    return {name: _Limiter(svc) for name, svc in services.items() if svc.client_limit is not None}


class _OpenAI:
    """The openai package: `AsyncOpenAI.chat.completions.create`, its own retries, back-off and pool."""

    def __init__(self, services: dict[str, Service], base_url: str) -> None:
        import openai

        self.errors = openai.APIError
        self.clients = {name: openai.AsyncOpenAI(
            base_url=base_url, api_key="asyncsim", max_retries=svc.retry.max_retries if svc.retry.policy != "none"
            else 0, timeout=svc.timeout if svc.timeout is not None else 600.0) for name, svc in services.items()}
        self.limiters = _limiters(services)  # around the call: the client's own retries do not see it

    async def send(self, service: str, hints: dict[str, Any]) -> None:
        body = _body(service, hints)
        if service in self.limiters:
            await self.limiters[service].take(hints, 0)
        try:
            await self.clients[service].chat.completions.create(
                model=service, messages=body["messages"], extra_body={"asyncsim": hints})
        except self.errors as exc:
            raise CallFailedError(str(exc)) from exc

    async def close(self) -> None:
        for c in self.clients.values():
            await c.close()


class _Plain:
    """httpx or aiohttp as users write with them: one client with a connection pool of the service's
    `connections` (unbounded when not given), and a retry loop that follows the model's `retry` rules —
    statuses to retry, the `retry-after` header in its window, the back-off with the simulator's jitter draw
    (`rules.calls.backoff_s`); what it proves is the library's HTTP stack, pool and CPU, not its retries (it has
    none)."""

    def __init__(self, library: str, services: dict[str, Service], base_url: str) -> None:
        self.library, self.services, self.url = library, services, base_url + "/chat/completions"
        self.limiters = _limiters(services)
        pool = {name: svc.connections for name, svc in services.items()}
        if library == "aiohttp":
            import aiohttp

            self.sessions: dict[str, Any] = {name: aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=n or 0)) for name, n in pool.items()}
        else:
            httpx = _httpx()
            self.sessions = {name: httpx.AsyncClient(limits=httpx.Limits(
                max_connections=n, max_keepalive_connections=n)) for name, n in pool.items()}

    async def _post(self, service: str, body: dict[str, Any], timeout: float | None) -> tuple[int, Any]:
        session = self.sessions[service]
        if self.library == "aiohttp":
            import aiohttp

            async with session.post(self.url, json=body, timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                await resp.json()
                return resp.status, resp.headers
        resp = await session.post(self.url, json=body, timeout=timeout)
        resp.json()
        return resp.status_code, resp.headers

    async def send(self, service: str, hints: dict[str, Any]) -> None:
        svc = self.services[service]
        body = _body(service, hints)
        timeouts = (TimeoutError, asyncio.TimeoutError) if self.library == "aiohttp" else (_httpx().TimeoutException,)
        for attempt in range(svc.attempts):
            if service in self.limiters:
                await self.limiters[service].take(hints, attempt)
            try:
                status, headers = await self._post(service, body, svc.timeout)
                outcome = "ok" if status == 200 else "rate_limited" if status == 429 else "server_error"
                given = headers.get("retry-after")
            except timeouts:
                outcome, given = "timeout", None
            if outcome == "ok":
                return
            if attempt + 1 == svc.attempts or outcome not in svc.retry.retry_on:
                raise CallFailedError(f"{service}: {outcome} after {attempt + 1} attempts")
            delay = backoff_s(svc.retry, attempt, hints["attempts"][attempt][2],
                              float(given) if given is not None else None)
            if delay is None:
                raise CallFailedError(f"{service}: retry-after {given} s is above the window")
            await asyncio.sleep(delay)

    async def close(self) -> None:
        for session in self.sessions.values():
            await (session.close() if self.library == "aiohttp" else session.aclose())


def _httpx() -> Any:
    """httpx, as the openai package installs it (`httpx2`), or httpx itself."""
    try:
        import httpx2 as httpx  # type: ignore[import-not-found, unused-ignore]
    except ImportError:  # pragma: no cover - depends on what is installed
        import httpx  # type: ignore[import-not-found, no-redef, unused-ignore]
    return httpx


def _sender(client: str, services: dict[str, Service], base_url: str) -> Any:
    return _OpenAI(services, base_url) if client == "openai" else _Plain(client, services, base_url)


async def _tasks(scenario: Scenario, client: str, base_url: str, cpu: CpuWork) -> tuple[np.ndarray, np.ndarray]:
    """Tasks created at their arrival times under `asyncio.Semaphore(K)`, each call sent by `client`."""
    services = scenario.workload.services
    sender = _sender(client, services, base_url)
    n = scenario.n_tasks
    done, failed = np.full(n, math.nan), np.zeros(n, dtype=bool)
    limit = scenario.strategy.admission
    gate = asyncio.Semaphore(limit) if limit is not None else None
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def steps(i: int) -> None:
        program = scenario.programs[scenario.task_type[i]]
        durs = scenario.durations[scenario.task_type[i]][scenario.task_row[i]]
        for node in program.steps:
            if node.kind == CPU:
                cpu.run(float(durs[node.id]))
            elif node.kind == IO:
                await asyncio.sleep(float(durs[node.id]))
            else:
                await sender.send(node.name, _hints(scenario, i, node.id, node.col, services[node.name].attempts))

    async def task(i: int) -> None:
        try:
            if gate is None:
                await steps(i)
            else:
                async with gate:
                    await steps(i)
        except CallFailedError:
            failed[i] = True
        done[i] = loop.time() - t0

    assert scenario.arrivals is not None
    tasks = []
    for i, t in enumerate(scenario.arrivals.tolist()):
        delay = t - (loop.time() - t0)
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(task(i)))
    await asyncio.gather(*tasks)
    await sender.close()
    return done, failed


async def _cookbook(scenario: Scenario, base_url: str) -> tuple[np.ndarray, np.ndarray]:
    """The OpenAI cookbook's `api_request_parallel_processor.py` algorithm, written here (its code is not
    copied): one loop that takes a request from the retry queue first, else the next one that has arrived,
    sends it with aiohttp as its own task when its limiter (a minute's capacity of requests and tokens,
    starting full, refilled continuously) holds enough, sleeps `interval`, and waits out `cooldown` seconds
    after the latest answer whose error says "Rate limit"; a failed request goes back on the retry queue
    until it is out of attempts. Its rules are the model's service's (`client_limit`, `retry`)."""
    import aiohttp

    ((name, svc),) = scenario.workload.services.items()
    limit = svc.client_limit
    assert limit is not None  # check_http requires it
    assert scenario.arrivals is not None
    node = scenario.programs[0].steps[0]
    req, tok = limit.buckets()
    level = [req[1] if req else math.inf, tok[1] if tok else math.inf]
    rates = [req[0] if req else 0.0, tok[0] if tok else 0.0]
    caps = list(level)
    n = scenario.n_tasks
    hints = [_hints(scenario, i, node.id, node.col, svc.attempts) for i in range(n)]
    cost = [charged_tokens(svc, limit, h.get("tokens_in", 0.0), h.get("tokens_out", 0.0)) if tok else 0.0
            for h in hints]
    done, failed = np.full(n, math.nan), np.zeros(n, dtype=bool)
    left = [svc.attempts] * n
    retry_queue: deque[int] = deque()
    loop = asyncio.get_running_loop()
    t0 = last_update = loop.time()
    last_rate_limit = -math.inf
    url, arrivals = base_url + "/chat/completions", scenario.arrivals.tolist()
    timeout = aiohttp.ClientTimeout(total=svc.timeout)
    running: set[asyncio.Task[None]] = set()

    async def call(i: int, session: aiohttp.ClientSession) -> None:
        nonlocal last_rate_limit
        try:
            async with session.post(url, json=_body(name, hints[i]), timeout=timeout) as resp:
                answer = await resp.json()
            error = answer.get("error")
        except Exception as exc:  # as the cookbook: any exception is a failed attempt
            error = {"message": str(exc)}
        if error is None:
            done[i] = loop.time() - t0
            return
        if "Rate limit" in str(error.get("message", "")):
            last_rate_limit = loop.time()
        if left[i]:
            retry_queue.append(i)
        else:
            failed[i], done[i] = True, loop.time() - t0

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        nxt, k = None, 0
        while True:
            if nxt is None:
                if retry_queue:
                    nxt = retry_queue.popleft()
                elif k < n and arrivals[k] <= loop.time() - t0:
                    nxt, k = k, k + 1
            now = loop.time()
            level = [min(c, x + r * (now - last_update)) for c, x, r in zip(caps, level, rates, strict=True)]
            last_update = now
            if nxt is not None and level[0] >= 1 and level[1] >= cost[nxt]:
                level = [level[0] - 1, level[1] - cost[nxt]]
                left[nxt] -= 1
                job = asyncio.create_task(call(nxt, session))
                running.add(job)
                job.add_done_callback(running.discard)
                nxt = None
            if nxt is None and k == n and not retry_queue and not running:
                break
            await asyncio.sleep(limit.interval)
            since = loop.time() - last_rate_limit
            if since < svc.retry.cooldown:
                await asyncio.sleep(svc.retry.cooldown - since)
    return done, failed


def _needs(client: str) -> None:
    """Refuse (ModelError) a client not supported, or one whose library is not installed."""
    if client not in CLIENTS:
        raise ModelError(f"--client: {client!r} is not supported (supported: {', '.join(CLIENTS)})")
    try:
        import aiohttp  # noqa: F401
        import openai  # noqa: F401
    except ImportError as exc:
        raise ModelError("--client: needs the clients extra: pip install 'asyncsim[clients]'") from exc


def run_http(scenario: Scenario, *, client: str = "openai", seed: int = 0) -> HttpRun:
    """Run `scenario`'s tasks with the real `client` library against `serve` (in a child process).

    Raises:
        ModelError: a client not supported, or a model HTTP validation cannot run (see `check_http`).
    """
    _needs(client)
    check_http(scenario, client)
    with serving(scenario.workload, seed) as (url, log):
        if client == "cookbook":
            done, failed = asyncio.run(_cookbook(scenario, url))
        else:
            done, failed = asyncio.run(_tasks(scenario, client, url, CpuWork(measure_rate())))
        rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    statuses = [row["status"] for row in rows]
    t_total = float(np.nanmax(done)) if len(done) else 0.0
    return HttpRun(t_total=t_total, completed=int((~failed).sum()), failed=int(failed.sum()),
                   requests=len(rows), rate_limited=sum(1 for s in statuses if s == 429), done=done)


def measure_client_cpu(client: str = "openai", requests: int = 200) -> float:
    """CPU seconds the real `client` library spends per request on its thread (building it, sending, reading
    and parsing the answer), measured against `serve` answering at once, after a warm-up. The cookbook
    processor sends with aiohttp: its figure is aiohttp's.

    Raises:
        ModelError: a client not supported, or its extra not installed.
    """
    _needs(client)
    library = library_of(client)
    services = {"llm": Service(latency=0.0)}
    workload = Workload(name="client-cpu", arrivals=Batch(count=1), task=(call("llm"),), services=services)

    async def main(url: str) -> float:
        sender = _sender(library, services, url)
        hints = {"task": 0, "step": 0, "attempts": [[0.0, 1.0, 0.0]]}
        for k in range(20 + requests):  # 20 to warm up: imports, the connection, CPU speed
            if k == 20:
                c0 = time.thread_time()
            await sender.send("llm", hints)
        spent = time.thread_time() - c0
        await sender.close()
        return spent / requests

    with serving(workload) as (url, _log):
        return asyncio.run(main(url))
