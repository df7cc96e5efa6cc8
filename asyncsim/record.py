"""Record a real run of an asyncio program (issue 15's observe step): its tasks' steps on the loop, their lag
and waits, and each HTTP exchange with its status, tokens and rate-limit headers.

`record_program(path, argv, out)` (or `asyncsim record --out DIR -- python PROGRAM.py ARGS`) runs the program
unmodified on a `RecordingLoop`: CPython's own selector loop on the real clock, whose callbacks are timed as
the twin's are (`twin.TaskTracker`: the program's tasks only; each step's CPU is its thread time). HTTP is read
as plaintext where the client sees it — from the transport for plain connections, from the TLS object for
encrypted ones (`ssl.SSLContext.wrap_bio`, which asyncio's and anyio's TLS both use, is wrapped while the
program runs) — and parsed with httptools both ways, so httpx (openai, anthropic) and aiohttp are seen without
hooks of their own. The asyncio semaphores and locks the program makes are watched (each acquisition: when
asked, when got; each release). The folder gets `calls.jsonl` (a call log `asyncsim fit` reads: one attempt
per line, host as service, the client's User-Agent), `tasks.jsonl` (per task: created, done, and its events —
CPU on the loop, calls, locks; what `asyncsim fit DIR` fits a model from), `run.json` (the run as a Result,
for `report`) and `program.json` (the program, its arguments, its locks' capacities, the openai and anthropic
clients it made with their max_retries), written atomically when
the program ends — also when it fails or is interrupted, with what was measured until then.

What cannot be seen: HTTP/2 (ALPN is left to the client; h2 exchanges are not parsed), websockets and other
protocols, work in threads and processes (their jobs are waits of the task that awaits them), waits on
asyncio.Queue, Event and Condition (seen as waits, not named), locks made before recording began or by a
library, and requests of a library that runs its own event loop in another thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.abc
import importlib.machinery
import io
import json
import math
import runpy
import ssl
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httptools

from ._io import write_atomic
from .api import replicate
from .errors import AsyncSimError
from .results import Result
from .services import OK, RATE_LIMITED, REJECTED, SERVER_ERROR, TIMEOUT
from .spec import Workload
from .twin import _LIBRARIES, _PROGRAM_TASK, TaskTracker, program_task, run_program

__all__ = ["COUNTS", "Check", "RecordingLoop", "check_model", "check_run", "record_program", "recorded_run"]

_MAX_BODY = 4 << 20  # response bodies read for `usage` up to this size


class RecordingLoop(TaskTracker, asyncio.SelectorEventLoop):  # type: ignore[misc]  # as TwinLoop
    """CPython's selector loop, its callbacks timed and attributed to the program's tasks, its HTTP read."""

    def __init__(self) -> None:
        super().__init__()
        self._track()
        self.rows: list[dict[str, Any]] = []  # the call log
        self.events: dict[int, list[tuple[Any, ...]]] = {}  # per task (its index): what it did (tasks.jsonl)
        self.locks: dict[int, dict[str, Any]] = {}  # per asyncio lock the program used: its kind and capacity
        self.t0 = super().time()
        self._running, self._waker = False, "io"  # a program's task step is running; what woke the one recorded

    def time(self) -> float:
        """Seconds since the recording began."""
        return super().time() - self.t0

    def _wrap(self, callback: Callable[..., Any], due: float | None = None) -> Callable[..., Any]:
        task, scheduled = self._attribute(callback)
        # what made it ready: a timer, another of the program's tasks (a lock, a queue, a library's pool handed
        # over in that task's step), or anything else (I/O, a library's callback)
        waker = "timer" if due is not None or self._due is not None else "task" if self._running else "io"

        def timed(*args: Any) -> Any:
            start, cpu0 = self.time(), time.thread_time()
            self._due, self._running = due, task is not None
            if task is not None:
                _PROGRAM_TASK.set(task)  # in the task's own context: what it starts inherits it
            try:
                return callback(*args)
            finally:
                self._due, self._running = None, False
                if task is not None:
                    self._waker = waker
                    self._record(task, scheduled, start, self.time() - start, time.thread_time() - cpu0)

        return timed

    async def create_connection(self, protocol_factory: Any, host: Any = None,
                                port: Any = None, **kwargs: Any) -> Any:
        if kwargs.get("ssl"):  # encrypted on the wire: read from its TLS object instead (_reading_tls)
            return await super().create_connection(protocol_factory, host, port, **kwargs)
        taps: list[_TappedProtocol] = []

        def tapped() -> Any:
            inner = protocol_factory()
            if isinstance(inner, asyncio.BufferedProtocol):
                return inner  # reads into its own buffer: not read here
            taps.append(_TappedProtocol(inner, self, str(kwargs.get("server_hostname") or host or "?")))
            return taps[-1]

        transport, protocol = await super().create_connection(tapped, host, port, **kwargs)
        if taps:
            taps[0].attach(transport)
            return transport, taps[0].inner
        return transport, protocol

    def _record(self, task: asyncio.Task[Any], scheduled: float, start: float, held: float, spent: float) -> None:
        super()._record(task, scheduled, start, held, spent)
        self.events.setdefault(self.tasks[task].index, []).append(
            ("cpu", scheduled, start, start + held, spent, self._waker))

    def event(self, task: asyncio.Task[Any] | None, *event: Any) -> None:
        """Something a program's task did beside running on the loop (a call, a lock taken or given back)."""
        rec = self.tasks.get(task) if task is not None else None
        if rec is not None:
            self.events.setdefault(rec.index, []).append(event)

    def task_rows(self) -> list[dict[str, Any]]:
        """tasks.jsonl: per task as the Result numbers them (the main task left out when it made others), its
        creation, end, whether it failed, and its events: ["cpu", ready, start, end, cpu_s, woken by: timer,
        task or io], ["call", sent,
        end, service, status], ["acquire", asked, got, lock], ["release", at, lock]."""
        tasks = sorted(self.tasks.values(), key=lambda t: t.index)
        skip = 1 if len(tasks) > 1 else 0
        return [{"task": t.index - skip, "created": round(t.created, 7),
                 "done": None if math.isnan(t.done) else round(t.done, 7), "failed": t.failed,
                 "events": [[round(x, 7) if isinstance(x, float) else x for x in e]
                            for e in sorted(self.events.get(t.index, []), key=lambda e: e[1])]}
                for t in tasks[skip:]]

    def _strategy(self) -> str:
        return "recorded"

    def _capacities(self) -> dict[str, int | None]:
        return {"loop": 1, **{str(r): None for r in self.tb.resources if r.kind == "service"}}


class _TappedProtocol(asyncio.Protocol):
    """Stands between a plain connection's transport and the client's protocol: what the transport delivers
    (and what the client writes) is read by a tap; everything else is the client protocol's."""

    def __init__(self, inner: Any, loop: RecordingLoop, host: str) -> None:
        self.inner, self.tap = inner, _HttpTap(loop, host)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def attach(self, transport: Any) -> None:
        """Read what the client writes on `transport`."""
        write, tap = transport.write, self.tap

        def tapped_write(data: Any) -> None:
            tap.sent(bytes(data))
            write(data)

        transport.write = tapped_write

    def connection_made(self, transport: Any) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.tap.received(data)
        self.inner.data_received(data)

    def eof_received(self) -> Any:
        return self.inner.eof_received()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.tap.closed()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class _HttpTap:
    """One connection's HTTP/1.1 exchanges, read from the plaintext both ways with httptools (llhttp, the
    parser uvicorn uses: a request parser for what the client writes, a response parser for what it reads);
    each finished exchange is reported. A connection that stops being HTTP/1.1 (TLS bytes, h2, an upgrade)
    or sends a HEAD request (its answer's length cannot be read from the answer) is read no further."""

    def __init__(self, loop: RecordingLoop, host: str) -> None:
        self.loop, self.host = loop, host
        self.requests = httptools.HttpRequestParser(_Requests(self))
        self.responses = httptools.HttpResponseParser(_Responses(self))
        self.pending: deque[dict[str, Any]] = deque()
        self.broken = False

    def sent(self, data: bytes) -> None:
        self._feed(self.requests, data)

    def received(self, data: bytes) -> None:
        self._feed(self.responses, data)

    def _feed(self, parser: Any, data: bytes) -> None:
        if not self.broken:
            try:
                parser.feed_data(data)
            except httptools.HttpParserError:
                self.broken = True

    def request(self, method: str, target: str, headers: dict[bytes, bytes]) -> None:
        """A request's head was written."""
        if method == "HEAD":
            self.broken = True
            return
        agent = headers.get(b"user-agent", b"").decode(errors="replace")
        # the host the client addressed (the connection may not know it: a socket connected first)
        host = headers.get(b"host", b"").decode(errors="replace").rsplit(":", 1)[0] or self.host
        self.pending.append({"task": program_task(), "sent": self.loop.time(), "agent": agent,
                             "host": host.strip("[]"), "method": method, "path": target})

    def response(self, status: int, headers: dict[str, str]) -> None:
        """A response's head was read (1xx answers are not the exchange's)."""
        if self.pending and status >= 200:
            # only a JSON body may carry `usage`: others are not kept
            self.pending[0] |= {"status": status, "headers": headers,
                                "body": bytearray() if "json" in headers.get("content-type", "") else None}

    def body(self, data: bytes) -> None:
        if self.pending and self.pending[0].get("body") is not None and len(self.pending[0]["body"]) < _MAX_BODY:
            self.pending[0]["body"] += data

    def complete(self) -> None:
        """A response was read to its end."""
        if self.pending and "status" in self.pending[0]:
            self.loop_finished(self.pending.popleft())


    def closed(self) -> None:
        """The connection went away: requests still unanswered were given up (a client timeout)."""
        while self.pending:
            self.loop_finished(self.pending.popleft() | {"status": None})

    def loop_finished(self, ex: dict[str, Any]) -> None:
        end = self.loop.time()
        status = ex.get("status")
        headers = ex.get("headers", {})
        usage: dict[str, Any] = {}
        body = ex.get("body")
        if body and b'"usage"' in body and "json" in headers.get("content-type", ""):
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                payload = json.loads(bytes(body))
                if isinstance(payload, dict) and isinstance(payload.get("usage"), dict):
                    usage = payload["usage"]
        tokens_in = usage.get("prompt_tokens", usage.get("input_tokens"))
        tokens_out = usage.get("completion_tokens", usage.get("output_tokens"))
        outcome = (TIMEOUT if status is None else OK if 200 <= status < 300 else RATE_LIMITED if status == 429
                   else SERVER_ERROR if status >= 500 else REJECTED)
        self.loop._call(ex["task"], ex["host"], ex["sent"], end, outcome,  # noqa: SLF001 - the tap is the loop's
                        float(tokens_in or 0), float(tokens_out or 0))
        self.loop.event(ex["task"], "call", ex["sent"], end, ex["host"],
                        status if status is not None else 0)
        row = {"t": round(ex["sent"], 6), "end": round(end, 6), "service": ex["host"], "method": ex["method"],
               "path": ex["path"], "status": status if status is not None else 0, "client": ex["agent"] or None,
               "tokens_in": tokens_in,
               "tokens_out": tokens_out, "retry_after": _seconds(headers.get("retry-after")),
               "ratelimit_limit_requests": _seconds(headers.get("x-ratelimit-limit-requests")),
               "ratelimit_limit_tokens": _seconds(headers.get("x-ratelimit-limit-tokens")),
               "ratelimit_remaining_requests": _seconds(headers.get("x-ratelimit-remaining-requests"))}
        self.loop.rows.append({k: v for k, v in row.items() if v is not None})


class _Requests:
    """httptools' callbacks for the requests a connection's client writes."""

    def __init__(self, tap: _HttpTap) -> None:
        self.tap, self.url, self.headers = tap, b"", dict[bytes, bytes]()

    def on_message_begin(self) -> None:
        self.url, self.headers = b"", {}

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_headers_complete(self) -> None:
        self.tap.request(self.tap.requests.get_method().decode(), self.url.decode(errors="replace"), self.headers)


class _Responses:
    """httptools' callbacks for the responses a connection's client reads."""

    def __init__(self, tap: _HttpTap) -> None:
        self.tap, self.headers = tap, dict[str, str]()

    def on_message_begin(self) -> None:
        self.headers = {}

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode(errors="replace")

    def on_headers_complete(self) -> None:
        self.tap.response(self.tap.responses.get_status_code(), self.headers)

    def on_body(self, data: bytes) -> None:
        self.tap.body(data)

    def on_message_complete(self) -> None:
        self.tap.complete()


def _seconds(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


class _TlsTap:
    """An SSLObject whose plaintext is read by a tap on its way in and out; everything else is the object's."""

    def __init__(self, inner: Any, tap: _HttpTap) -> None:
        self._inner, self._tap = inner, tap

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def write(self, data: Any) -> int:
        n = self._inner.write(data)
        self._tap.sent(bytes(memoryview(data)[:n]))
        return n

    def read(self, n: int = 1024, buffer: Any = None) -> Any:
        if buffer is None:
            data = self._inner.read(n)
            self._tap.received(bytes(data))
            return data
        count = self._inner.read(n, buffer)
        self._tap.received(bytes(memoryview(buffer)[:count]))
        return count


@contextlib.contextmanager
def _reading_tls(loop_of: Callable[[], RecordingLoop | None]) -> Iterator[None]:
    """While the program runs, each TLS object a client makes is read by a tap."""
    original = ssl.SSLContext.wrap_bio

    def wrap_bio(self: ssl.SSLContext, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server_side: bool = False,
                 server_hostname: str | None = None, session: Any = None) -> Any:
        inner = original(self, incoming, outgoing, server_side, server_hostname, session)
        loop = loop_of()
        if loop is None or server_side:
            return inner
        return _TlsTap(inner, _HttpTap(loop, server_hostname or "?"))

    ssl.SSLContext.wrap_bio = wrap_bio  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        ssl.SSLContext.wrap_bio = original  # type: ignore[method-assign]


def _made_by_the_program() -> bool:
    """Whether the code that made the lock being made is the program's (not asyncio's or a library's)."""
    frame: Any = sys._getframe(2)  # noqa: SLF001 - past __init__ and its patch
    while frame is not None and frame.f_code.co_filename == asyncio.locks.__file__:
        frame = frame.f_back  # BoundedSemaphore's __init__ calls Semaphore's
    return frame is not None and not frame.f_code.co_filename.startswith(_LIBRARIES)


@contextlib.contextmanager
def _watching_locks(loop_of: Callable[[], RecordingLoop | None]) -> Iterator[None]:
    """While the program runs, each asyncio.Semaphore (and BoundedSemaphore) and Lock it makes is numbered with
    its capacity, and each acquisition (asked, got) and release is told to the recording loop as an event of
    the task that made it (asyncio/locks.py: `async with` calls these methods)."""
    saved: dict[tuple[type, str], Any] = {(cls, name): getattr(cls, name) for cls in (asyncio.Semaphore, asyncio.Lock)
             for name in ("__init__", "acquire", "release")}

    def patched(cls: type, kind: str) -> None:
        init, acquire, release = (saved[cls, n] for n in ("__init__", "acquire", "release"))

        def init_(self: Any, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            loop = loop_of()
            if loop is not None and _made_by_the_program():
                self._asyncsim_lock = len(loop.locks) + 1
                capacity = getattr(self, "_value", 1) if kind == "semaphore" else 1
                loop.locks[self._asyncsim_lock] = {"kind": type(self).__name__, "capacity": capacity}

        async def acquire_(self: Any) -> Any:
            loop, asked = loop_of(), None
            if loop is not None:
                asked = loop.time()
            got = await acquire(self)
            number = getattr(self, "_asyncsim_lock", None)
            if loop is not None and asked is not None and number is not None:
                loop.event(program_task(), "acquire", asked, loop.time(), number)
            return got

        def release_(self: Any) -> None:
            release(self)
            loop, number = loop_of(), getattr(self, "_asyncsim_lock", None)
            if loop is not None and number is not None:
                loop.event(program_task(), "release", loop.time(), number)

        cls.__init__ = init_  # type: ignore[misc]
        cls.acquire = acquire_  # type: ignore[attr-defined]
        cls.release = release_  # type: ignore[attr-defined]

    patched(asyncio.Semaphore, "semaphore")
    patched(asyncio.Lock, "lock")
    try:
        yield
    finally:
        for (cls, name), original in saved.items():
            setattr(cls, name, original)


_CLIENT_MODULES = ("openai._base_client", "anthropic._base_client")  # the Stainless clients' common base


@contextlib.contextmanager
def _watching_clients(found: list[dict[str, Any]]) -> Iterator[None]:
    """While the program runs, each openai or anthropic client it makes is read (`found`): its library, its
    User-Agent and its `max_retries` (`_base_client.py: BaseClient.__init__`) — what a fit cannot learn from
    the calls when no call ran out of retries. The module is patched when it is imported (or now, if it was)."""
    patched: list[tuple[Any, Any]] = []

    def patch(module: Any) -> None:
        base = getattr(module, "BaseClient", None)
        if base is None or any(b is base for b, _ in patched):
            return
        init = base.__init__

        def init_(self: Any, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            with contextlib.suppress(Exception):  # a client this does not understand is not read
                found.append({"library": module.__name__.split(".")[0], "max_retries": int(self.max_retries),
                              "user_agent": str(self.user_agent)})

        base.__init__ = init_
        patched.append((base, init))

    class Finder(importlib.abc.MetaPathFinder):
        def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
            if name not in _CLIENT_MODULES:
                return None
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            loader = spec.loader if spec is not None else None
            if isinstance(loader, importlib.machinery.SourceFileLoader):
                run = loader.exec_module

                def exec_module(module: Any) -> None:
                    run(module)
                    patch(module)

                loader.exec_module = exec_module  # type: ignore[method-assign]
            return spec

    for name in _CLIENT_MODULES:
        if name in sys.modules:
            patch(sys.modules[name])
    finder = Finder()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for base, init in patched:
            base.__init__ = init


class _Policy(asyncio.DefaultEventLoopPolicy):
    def __init__(self) -> None:
        super().__init__()
        self.loops: list[RecordingLoop] = []

    def new_event_loop(self) -> RecordingLoop:
        loop = RecordingLoop()
        self.loops.append(loop)
        return loop


class RecordError(AsyncSimError):
    """The program could not be recorded (the message says why)."""


def record_program(path: str | Path, argv: Sequence[str] = (), out: str | Path = "run") -> Result:
    """Run the program at `path` (as `__main__`, with `argv`) on a recording loop; write `out`/calls.jsonl
    and `out`/run.json (also when it fails or is interrupted) and return the run's Result.

    Raises:
        RecordError: no such program, it made no event loop, or it failed (after writing what was measured).
    """
    path, folder = Path(path), Path(out)
    if not path.is_file():
        raise RecordError(f"record: no program at {path}")
    policy = _Policy()
    saved_policy, saved_argv = asyncio.get_event_loop_policy(), sys.argv
    sys.argv = [str(path), *argv]
    asyncio.set_event_loop_policy(policy)
    error: BaseException | None = None
    clients: list[dict[str, Any]] = []
    try:
        def current() -> RecordingLoop | None:
            return policy.loops[-1] if policy.loops else None

        with _reading_tls(current), _watching_locks(current), _watching_clients(clients):
            runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (0, None):
            error = exc
    except (Exception, KeyboardInterrupt) as exc:  # keep what was measured, then say what happened
        error = exc
    finally:
        asyncio.set_event_loop_policy(saved_policy)
        sys.argv = saved_argv
    if not policy.loops:
        raise RecordError(f"record: {path.name} made no asyncio event loop (run its work with asyncio.run(main()))")
    loop = policy.loops[-1]
    result = loop.result(path.stem)
    write_atomic(folder / "calls.jsonl", "".join(json.dumps(r) + "\n" for r in loop.rows))
    write_atomic(folder / "tasks.jsonl", "".join(json.dumps(r) + "\n" for r in loop.task_rows()))
    write_atomic(folder / "run.json", json.dumps(result.to_dict()))
    write_atomic(folder / "program.json", json.dumps({"program": str(path.resolve()), "argv": list(argv),
                                                      "locks": loop.locks, "clients": clients}))
    if error is not None:
        raise RecordError(f"record: {path.name} stopped with {type(error).__name__}: {error}; what it did until "
                          f"then is in {folder}") from error
    return result


COUNTS = ("completed", "failed", "requests", "429s")  # the figures of `Check.rows` that are counts


@dataclass(frozen=True)
class Check:
    """A recorded run against a prediction of it — the same program in the twin with fitted services, or a
    fitted model simulated (`how` says which) —: each figure both ways."""

    recorded: Result
    predicted: Result
    how: str = "twin"
    runs: tuple[Result, ...] = ()  # a simulated model's replications (`predicted` is their means)

    @property
    def error(self) -> float:
        """The twin's relative error on T_total."""
        return self.predicted.t_total / self.recorded.t_total - 1 if self.recorded.t_total > 0 else math.nan

    def rows(self) -> list[tuple[str, float, float]]:
        """(figure, recorded, predicted) for the figures `check` prints."""
        r, p = self.recorded, self.predicted

        def total(res: Result, what: str) -> float:
            return float(sum(getattr(s, what) for s in res.services.values()))

        return [("T_total", r.t_total, p.t_total), ("latency p50", r.latency.p50, p.latency.p50),
                ("latency p95", r.latency.p95, p.latency.p95), ("latency p99", r.latency.p99, p.latency.p99),
                ("throughput /s", r.throughput, p.throughput),
                ("mean in flight", r.concurrency.mean, p.concurrency.mean), ("completed", r.completed, p.completed),
                ("failed", r.failed, p.failed), ("requests", total(r, "requests"), total(p, "requests")),
                ("429s", total(r, "rate_limited"), total(p, "rate_limited"))]


def recorded_run(run: str | Path) -> Result:
    """The Result of a recording (`run`: its folder).

    Raises:
        RecordError: the folder holds no recording.
    """
    folder = Path(run)
    try:
        return Result.from_dict(json.loads((folder / "run.json").read_text()))
    except (OSError, ValueError, KeyError) as exc:
        raise RecordError(f"check: {folder} holds no recording (asyncsim record --out {folder} -- ...): "
                          f"{exc}") from None


def check_model(model: Workload, run: str | Path, *, seed: int = 0, replications: int = 10) -> Check:
    """Simulate `model` (e.g. fitted from the recording) `replications` times and set the means beside the
    recorded run (`run`: its folder) — one run of a batch is one draw of its slowest chain, so one seed alone
    can be 20% from the mean.

    Raises:
        RecordError: the folder holds no recording.
    """
    recorded = recorded_run(run)
    summary = replicate(model, replications=replications, seed=seed)
    return Check(recorded, Result.from_dict(summary.to_dict()), "simulated", summary.runs)


def check_run(services: str | Path, run: str | Path, *, seed: int = 0) -> Check:
    """Run the program a recording (`run`: its folder) was made of in the twin, its HTTP answered by
    `services` (e.g. fitted from the recording's calls), and set the two runs side by side.

    Raises:
        RecordError: the folder holds no recording.
    """
    folder = Path(run)
    recorded = recorded_run(folder)
    try:
        meta = json.loads((folder / "program.json").read_text())
    except (OSError, ValueError) as exc:
        raise RecordError(f"check: {folder} holds no recording (asyncsim record --out {folder} -- ...): "
                          f"{exc}") from None
    with contextlib.redirect_stdout(io.StringIO()):
        predicted = run_program(meta["program"], meta["argv"], services=services, seed=seed)
    return Check(recorded, predicted)
