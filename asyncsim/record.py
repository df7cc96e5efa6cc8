"""Record a real run of an asyncio program (issue 15's observe step): its tasks' steps on the loop, their lag
and waits, and each HTTP exchange with its status, tokens and rate-limit headers.

`record_program(path, argv, out)` (or `asyncsim record --out DIR -- python PROGRAM.py ARGS`) runs the program
unmodified on a `RecordingLoop`: CPython's own selector loop on the real clock, whose callbacks are timed as
the twin's are (`twin.TaskTracker`: the program's tasks only; each step's CPU is its thread time). HTTP is read
as plaintext where the client sees it — from the transport for plain connections, from the TLS object for
encrypted ones (`ssl.SSLContext.wrap_bio`, which asyncio's and anyio's TLS both use, is wrapped while the
program runs) — and parsed with h11 both ways, so httpx (openai, anthropic) and aiohttp are seen without
hooks of their own. The folder gets `calls.jsonl` (a call log `asyncsim fit` reads: one attempt per line,
host as service) and `run.json` (the run as a Result, for `report`), written atomically when the program
ends — also when it fails or is interrupted, with what was measured until then.

What cannot be seen: HTTP/2 (ALPN is left to the client; h2 exchanges are not parsed), websockets and other
protocols, work in threads and processes (their jobs are waits of the task that awaits them), and requests
of a library that runs its own event loop in another thread.
"""

from __future__ import annotations

import asyncio
import contextlib
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

import h11

from ._io import write_atomic
from .errors import AsyncSimError
from .results import Result
from .services import OK, RATE_LIMITED, REJECTED, SERVER_ERROR, TIMEOUT
from .twin import _PROGRAM_TASK, TaskTracker, program_task, run_program

__all__ = ["Check", "RecordingLoop", "check_run", "record_program"]

_MAX_BODY = 4 << 20  # response bodies read for `usage` up to this size


class RecordingLoop(TaskTracker, asyncio.SelectorEventLoop):  # type: ignore[misc]  # as TwinLoop
    """CPython's selector loop, its callbacks timed and attributed to the program's tasks, its HTTP read."""

    def __init__(self) -> None:
        super().__init__()
        self._track()
        self.rows: list[dict[str, Any]] = []  # the call log
        self.t0 = super().time()

    def time(self) -> float:
        """Seconds since the recording began."""
        return super().time() - self.t0

    def _wrap(self, callback: Callable[..., Any], due: float | None = None) -> Callable[..., Any]:
        task, scheduled = self._attribute(callback)

        def timed(*args: Any) -> Any:
            start, cpu0 = self.time(), time.thread_time()
            self._due = due
            if task is not None:
                _PROGRAM_TASK.set(task)  # in the task's own context: what it starts inherits it
            try:
                return callback(*args)
            finally:
                self._due = None
                if task is not None:
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
    """One connection's HTTP/1.1 exchanges, read from the plaintext both ways (h11 as server for the requests
    the client writes, as client for the responses it reads); each finished exchange is reported."""

    def __init__(self, loop: RecordingLoop, host: str) -> None:
        self.loop, self.host = loop, host
        self.requests = h11.Connection(h11.SERVER)
        self.responses = h11.Connection(h11.CLIENT)
        self.pending: deque[dict[str, Any]] = deque()
        self.broken = False

    def sent(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            self.requests.receive_data(data)
            while True:
                event = self.requests.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                    return
                if isinstance(event, h11.Request):
                    self.pending.append({"task": program_task(), "sent": self.loop.time(),
                                         "method": event.method.decode(), "path": event.target.decode()})
                if isinstance(event, h11.Request | h11.Data | h11.EndOfMessage):
                    self.responses.send(event)  # the client side's state follows what was sent
        except (h11.RemoteProtocolError, h11.LocalProtocolError):
            self.broken = True  # not HTTP/1.1 (TLS bytes, h2): nothing more is read here

    def received(self, data: bytes) -> None:
        if self.broken:
            return
        try:
            self.responses.receive_data(data)
            while True:
                event = self.responses.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return
                if isinstance(event, h11.ConnectionClosed) or not self.pending:
                    return
                if isinstance(event, h11.Response):
                    self.pending[0] |= {"status": event.status_code, "body": bytearray(),
                                        "headers": {k.decode().lower(): v.decode() for k, v in event.headers}}
                elif isinstance(event, h11.Data) and "body" in self.pending[0]:
                    if len(self.pending[0]["body"]) < _MAX_BODY:
                        self.pending[0]["body"] += event.data
                elif isinstance(event, h11.EndOfMessage):
                    self.loop_finished(self.pending.popleft())
                    self.requests.send(h11.Response(status_code=200, headers=[("content-length", "0")]))
                    self.requests.send(h11.EndOfMessage())
                    self.requests.start_next_cycle()
                    self.responses.start_next_cycle()
        except (h11.RemoteProtocolError, h11.LocalProtocolError):
            self.broken = True

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
        if body and "json" in headers.get("content-type", ""):
            with contextlib.suppress(ValueError, UnicodeDecodeError):
                payload = json.loads(bytes(body))
                if isinstance(payload, dict) and isinstance(payload.get("usage"), dict):
                    usage = payload["usage"]
        tokens_in = usage.get("prompt_tokens", usage.get("input_tokens"))
        tokens_out = usage.get("completion_tokens", usage.get("output_tokens"))
        outcome = (TIMEOUT if status is None else OK if 200 <= status < 300 else RATE_LIMITED if status == 429
                   else SERVER_ERROR if status >= 500 else REJECTED)
        self.loop._call(ex["task"], self.host, ex["sent"], end, outcome,  # noqa: SLF001 - the tap is the loop's
                        float(tokens_in or 0), float(tokens_out or 0))
        row = {"t": round(ex["sent"], 6), "end": round(end, 6), "service": self.host, "method": ex["method"],
               "path": ex["path"], "status": status if status is not None else 0, "tokens_in": tokens_in,
               "tokens_out": tokens_out, "retry_after": _seconds(headers.get("retry-after")),
               "ratelimit_limit_requests": _seconds(headers.get("x-ratelimit-limit-requests")),
               "ratelimit_limit_tokens": _seconds(headers.get("x-ratelimit-limit-tokens")),
               "ratelimit_remaining_requests": _seconds(headers.get("x-ratelimit-remaining-requests"))}
        self.loop.rows.append({k: v for k, v in row.items() if v is not None})


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
    try:
        with _reading_tls(lambda: policy.loops[-1] if policy.loops else None):
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
    write_atomic(folder / "run.json", json.dumps(result.to_dict()))
    write_atomic(folder / "program.json", json.dumps({"program": str(path.resolve()), "argv": list(argv)}))
    if error is not None:
        raise RecordError(f"record: {path.name} stopped with {type(error).__name__}: {error}; what it did until "
                          f"then is in {folder}") from error
    return result


@dataclass(frozen=True)
class Check:
    """A recorded run against the same program in the twin with fitted services: each figure both ways."""

    recorded: Result
    predicted: Result

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
                ("latency p95", r.latency.p95, p.latency.p95), ("completed", r.completed, p.completed),
                ("failed", r.failed, p.failed), ("requests", total(r, "requests"), total(p, "requests")),
                ("429s", total(r, "rate_limited"), total(p, "rate_limited"))]


def check_run(services: str | Path, run: str | Path, *, seed: int = 0) -> Check:
    """Run the program a recording (`run`: its folder) was made of in the twin, its HTTP answered by
    `services` (e.g. fitted from the recording's calls), and set the two runs side by side.

    Raises:
        RecordError: the folder holds no recording.
    """
    folder = Path(run)
    try:
        meta = json.loads((folder / "program.json").read_text())
        recorded = Result.from_dict(json.loads((folder / "run.json").read_text()))
    except (OSError, ValueError, KeyError) as exc:
        raise RecordError(f"check: {folder} holds no recording (asyncsim record --out {folder} -- ...): "
                          f"{exc}") from None
    with contextlib.redirect_stdout(io.StringIO()):
        predicted = run_program(meta["program"], meta["argv"], services=services, seed=seed)
    return Check(recorded, predicted)
