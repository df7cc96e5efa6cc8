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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ModelError
from ..scenario import CALL, CPU, IO, Scenario
from ..serve import ServeOptions, serve
from ..services import ATTEMPT_FIELDS, CALL_HEAD, Service
from ..spec import Batch, Workload, call
from .cpuwork import CpuWork, measure_rate

__all__ = ["HttpRun", "check_http", "measure_client_cpu", "run_http", "serving"]

CLIENTS = ("openai",)


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


def check_http(scenario: Scenario) -> None:
    """Refuse (ModelError) what HTTP validation cannot run: see the messages."""
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
    for name, svc in scenario.workload.services.items():
        if svc.batching is not None or svc.policy.kind != "fifo" or svc.client_limit is not None:
            raise ModelError(f"services.{name}: HTTP validation emulates API services (no batching, FIFO, no "
                             "client_limit: the client library has none)")


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
    uniform), in the layout of `services.call_width`."""
    durs = scenario.durations[scenario.task_type[i]][scenario.task_row[i]]
    if col < 0:  # a plain call: its latency is the node's own draw
        return {"task": i, "step": node_id, "attempts": [[float(durs[node_id]), 1.0]]}
    heads = [col + CALL_HEAD + ATTEMPT_FIELDS * k for k in range(attempts)]
    return {"task": i, "step": node_id, "tokens_in": float(durs[col]), "tokens_out": float(durs[col + 1]),
            "attempts": [[float(durs[at]), float(durs[at + 1])] for at in heads]}


async def _clients(scenario: Scenario, base_url: str, cpu: CpuWork) -> tuple[np.ndarray, np.ndarray]:
    import openai

    services = scenario.workload.services
    clients = {name: openai.AsyncOpenAI(base_url=base_url, api_key="asyncsim", max_retries=svc.retry.max_retries
                                        if svc.retry.policy != "none" else 0,
                                        timeout=svc.timeout if svc.timeout is not None else 600.0)
               for name, svc in services.items()}
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
                hints = _hints(scenario, i, node.id, node.col, services[node.name].attempts)
                await clients[node.name].chat.completions.create(
                    model=node.name, messages=[{"role": "user", "content": f"task {i}"}],
                    extra_body={"asyncsim": hints})

    async def task(i: int) -> None:
        try:
            if gate is None:
                await steps(i)
            else:
                async with gate:
                    await steps(i)
        except openai.APIError:
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
    for c in clients.values():
        await c.close()
    return done, failed


def run_http(scenario: Scenario, *, client: str = "openai", seed: int = 0) -> HttpRun:
    """Run `scenario`'s tasks with the real `client` library against `serve` (in a child process).

    Raises:
        ModelError: a client not supported, or a model HTTP validation cannot run (see `_check`).
    """
    if client not in CLIENTS:
        raise ModelError(f"--client: {client!r} is not supported (supported: {', '.join(CLIENTS)})")
    try:
        import aiohttp  # noqa: F401
        import openai  # noqa: F401
    except ImportError as exc:
        raise ModelError("--client: needs the clients extra: pip install 'asyncsim[clients]'") from exc
    check_http(scenario)
    with serving(scenario.workload, seed) as (url, log):
        cpu = CpuWork(measure_rate())
        done, failed = asyncio.run(_clients(scenario, url, cpu))
        rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    statuses = [row["status"] for row in rows]
    t_total = float(np.nanmax(done)) if len(done) else 0.0
    return HttpRun(t_total=t_total, completed=int((~failed).sum()), failed=int(failed.sum()),
                   requests=len(rows), rate_limited=sum(1 for s in statuses if s == 429), done=done)



def measure_client_cpu(client: str = "openai", requests: int = 200) -> float:
    """CPU seconds the real `client` library spends per request on its thread (building it, sending, reading
    and parsing the answer), measured against `serve` answering at once, after a warm-up.

    Raises:
        ModelError: a client not supported, or its extra not installed.
    """
    if client not in CLIENTS:
        raise ModelError(f"--client: {client!r} is not supported (supported: {', '.join(CLIENTS)})")
    import openai

    workload = Workload(name="client-cpu", arrivals=Batch(count=1), task=(call("llm"),),
                        services={"llm": Service(latency=0.0)})
    async def main(url: str) -> float:
        c = openai.AsyncOpenAI(base_url=url, api_key="asyncsim")
        for k in range(20 + requests):  # 20 to warm up: imports, the connection, CPU speed
            if k == 20:
                c0 = time.thread_time()
            await c.chat.completions.create(model="llm", messages=[{"role": "user", "content": "hello"}])
        spent = time.thread_time() - c0
        await c.close()
        return spent / requests

    with serving(workload) as (url, _log):
        return asyncio.run(main(url))
