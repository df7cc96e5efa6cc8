"""An in-memory network for a virtual-time event loop: the program's HTTP requests to declared hosts are
answered by `serve.Api` (the simulator's service rules) on the loop's own clock.

The loop's `create_connection` hands the client's protocol a `MemoryTransport` whose other end is an HTTP/1.1
server (h11) per connection; TLS to a declared host is a pass-through (`PlainTls`, given by the patched
`ssl.SSLContext.wrap_bio` while the twin runs), so the client library's whole HTTP stack — connection pool,
keep-alive, timeouts, retries, its parsing — runs unchanged. The server side runs in callbacks the loop does
not charge to the program (`free`), the client's reading in callbacks it does (`charged`).
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections import deque
from collections.abc import Callable
from typing import Any

import h11

from ..serve import Api, Reply

__all__ = ["MemoryTransport", "Network", "PlainTls"]

_FAKE_NET = "198.18.{}.{}"  # RFC 2544's benchmarking range: never a real host


class PlainTls:
    """An `ssl.SSLObject` stand-in that passes bytes through its memory BIOs unencrypted (the other end is
    ours); what asyncio streams and anyio's TLSStream call of an SSLObject."""

    def __init__(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO, server_hostname: str | None,
                 context: ssl.SSLContext) -> None:
        self.incoming, self.outgoing = incoming, outgoing
        self.server_hostname, self.context, self.server_side = server_hostname, context, False

    def do_handshake(self) -> None:
        return None

    def read(self, n: int = 1024, buffer: Any = None) -> Any:
        data = self.incoming.read(n)
        if not data and not self.incoming.eof:
            raise ssl.SSLWantReadError("no data yet")
        if buffer is not None:
            buffer[:len(data)] = data
            return len(data)
        return data

    def write(self, data: bytes) -> int:
        return self.outgoing.write(data)

    def unwrap(self) -> None:
        return None

    def pending(self) -> int:
        return 0

    def getpeercert(self, binary_form: bool = False) -> Any:
        return b"" if binary_form else {}

    def selected_alpn_protocol(self) -> str | None:
        return None

    def version(self) -> str:
        return "TLSv1.3"

    def cipher(self) -> tuple[str, str, int]:
        return ("TLS_AES_128_GCM_SHA256", "TLSv1.3", 128)

    def shared_ciphers(self) -> list[Any]:
        return []

    def compression(self) -> None:
        return None

    def get_channel_binding(self, cb_type: str = "tls-unique") -> None:
        return None


_SOCKNAME = ("127.0.0.1", 50000)


class _Socket:
    """What clients ask of a connection's socket (its addresses, options); there is none."""

    family = socket.AF_INET
    type = socket.SOCK_STREAM
    proto = socket.IPPROTO_TCP

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer

    def getpeername(self) -> tuple[str, int]:
        return self.peer

    def getsockname(self) -> tuple[str, int]:
        return _SOCKNAME

    def fileno(self) -> int:
        return -1

    def setsockopt(self, *args: Any) -> None:
        return None

    def getsockopt(self, *args: Any) -> int:
        return 0


class MemoryTransport(asyncio.Transport):
    """The client's end of an in-memory connection: `write` feeds the server, the server's bytes reach the
    protocol's `data_received` through the loop (honouring `pause_reading`)."""

    def __init__(self, net: Network, protocol: asyncio.BaseProtocol, server: _Server, peer: tuple[str, int]) -> None:
        super().__init__()
        self.net, self.protocol, self.server, self.peer = net, protocol, server, peer
        self.paused = False
        self.closing = False
        self.pending: deque[bytes] = deque()
        self.eof = False

    # the client writes
    def write(self, data: Any) -> None:
        if self.closing:
            return
        self.server.receive(bytes(data))

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def can_write_eof(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (0, 0)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        return None

    # the client reads
    def feed(self, data: bytes) -> None:
        """Bytes from the server, delivered in order as the protocol reads."""
        self.pending.append(data)
        self._flush()

    def _flush(self) -> None:
        while self.pending and not self.paused and not self.closing:
            self.net.charged(self._deliver, self.pending.popleft())

    def _deliver(self, data: bytes) -> None:
        if not self.closing:
            self.protocol.data_received(data)  # type: ignore[attr-defined]

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False
        self._flush()

    def is_reading(self) -> bool:
        return not self.paused

    # closing
    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self.server.closed()
        self.net.charged(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        info = {"peername": self.peer, "sockname": _SOCKNAME, "socket": _Socket(self.peer)}
        return info.get(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.protocol


class _Server:
    """The server's end of one connection: HTTP/1.1 by h11, each request answered by the `Api` after its
    wait on the loop's clock."""

    def __init__(self, net: Network, host: str) -> None:
        self.net, self.host = net, host
        self.h11 = h11.Connection(h11.SERVER)
        self.transport: MemoryTransport | None = None
        self.request: h11.Request | None = None
        self.body = bytearray()
        self.timer: asyncio.TimerHandle | None = None
        self.reply: Reply | None = None
        self.sent = 0.0
        self.sender: Any = None  # the task that sent the request being answered

    def receive(self, data: bytes) -> None:
        if self.sender is None:
            self.sender = self.net.current_task()
        self.h11.receive_data(data)
        self._events()

    def _events(self) -> None:
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError:
                self._send(400, {}, {"error": {"message": "bad HTTP", "type": "invalid_request_error"}})
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self.request, self.body = event, bytearray()
                self.sent = self.net.now()
            elif isinstance(event, h11.Data):
                self.body += event.data
            elif isinstance(event, h11.EndOfMessage):
                self._answer()
                return
            elif isinstance(event, h11.ConnectionClosed):
                return

    def _answer(self) -> None:
        request = self.request
        assert request is not None
        path = request.target.decode("latin-1").split("?")[0]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
        api = self.net.api
        if request.method == b"GET" and path.endswith("/models"):
            self._send(200, {}, api.models())
            return
        kinds = {"/chat/completions": "chat", "/embeddings": "embeddings", "/messages": "messages"}
        # any other request (a page): answered by the host's service, its body not read
        kind = next((k for suffix, k in kinds.items() if path.endswith(suffix)), "other")
        if kind != "other" and request.method != b"POST":
            kind = "other"
        reply = api.handle(kind, bytes(self.body), headers, self.net.now(), self.net.hosts[self.host])
        self.reply = reply
        if reply.answer is None:
            self._send(reply.status, reply.headers, reply.payload)
            return
        self.timer = self.net.free(reply.wait, self._done)

    def _done(self) -> None:
        reply = self.reply
        assert reply is not None
        self.timer = None
        self.net.api.finished(reply)
        self.net.answered(self.sender, self.sent, reply)
        self._send(reply.status, reply.headers, reply.payload)

    def _send(self, status: int, headers: dict[str, str], payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        fields = [("content-type", "application/json"), ("content-length", str(len(body))),
                  *((k, v) for k, v in headers.items())]
        out = self.h11.send(h11.Response(status_code=status, headers=fields))
        out += self.h11.send(h11.Data(data=body)) + self.h11.send(h11.EndOfMessage())
        self.request, self.reply, self.sender = None, None, None
        if self.transport is not None:
            self.transport.feed(out)
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            self._events()  # a pipelined request already received

    def closed(self) -> None:
        """The client closed the connection: a request still waiting for its answer is given up (its client
        timed out, or cancelled it)."""
        if self.timer is not None and self.reply is not None:
            self.timer.cancel()
            self.net.api.finished(self.reply)
            self.net.answered(self.sender, self.sent, self.reply, abandoned=True)
        self.timer = None


class Network:
    """The hosts a twin answers (each to its services' `Api`, with a default service per host) on a loop's
    clock: `free(delay, fn)` runs server work uncharged, `charged(fn, *args)` client work charged, `now()` reads
    the clock, `current_task()` names the sender, `answered(task, sent, reply)` is told each answer."""

    def __init__(self, api: Api, hosts: dict[str, str | None], *, now: Callable[[], float],
                 free: Callable[..., asyncio.TimerHandle], charged: Callable[..., Any],
                 current_task: Callable[[], Any], answered: Callable[..., None]) -> None:
        self.api, self.hosts, self.now, self.free, self.charged = api, hosts, now, free, charged
        self.current_task, self._answered = current_task, answered
        self.addresses = {host: _FAKE_NET.format(k // 250, k % 250 + 1) for k, host in enumerate(hosts)}
        self.by_address = {ip: host for host, ip in self.addresses.items()}

    def host_of(self, host: Any) -> str | None:
        """The declared host a name or an address given to `create_connection` stands for (None: not ours)."""
        name = host.decode() if isinstance(host, bytes) else str(host) if host is not None else ""
        name = name.lower().rstrip(".")
        return name if name in self.hosts else self.by_address.get(name)

    def getaddrinfo(self, host: str, port: int) -> list[tuple[Any, ...]]:
        """What `getaddrinfo` answers for a declared host."""
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (self.addresses[host], port or 443))]

    def connect(self, host: str, port: int, protocol_factory: Callable[[], asyncio.BaseProtocol]
                ) -> tuple[MemoryTransport, asyncio.BaseProtocol]:
        """A new connection to `host`: its transport and the client's protocol, connected."""
        server = _Server(self, host)
        protocol = protocol_factory()
        transport = MemoryTransport(self, protocol, server, (self.addresses[host], port))
        server.transport = transport
        protocol.connection_made(transport)
        return transport, protocol

    def answered(self, task: Any, sent: float, reply: Reply, *, abandoned: bool = False) -> None:
        self._answered(task, sent, reply, abandoned)
