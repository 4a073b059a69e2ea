"""A keep-alive HTTP proxy in front of one real server that can play a server closing a pooled
connection, for tests (stdlib only).

Unlike tests/fault_proxy.py, a client's connection stays open between requests, as with any
HTTP/1.1 server, so a client pools it. Each request goes upstream on a connection of its own.
A rule matching the n-th request of a connection (n >= 2: one the client sent on a connection
it had pooled) resets the connection (RST), as a server that had closed it while it idled:

    before   the request never reaches the server
    after    the server answered, the answer is lost on the way back

Request bodies must come with Content-Length (JSON APIs such as Keystone's); replies are read
until the upstream closes (the request goes up with `Connection: close`).
"""

from __future__ import annotations

import asyncio
import re
import socket
import struct
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal


@dataclass
class Reset:
    when: Literal["before", "after"]
    method: str
    path: str  # regex, searched in the request target
    times: int = 1
    fired: int = 0

    def matches(self, method: str, target: str, nth: int) -> bool:
        return (nth >= 2 and self.fired < self.times and method == self.method
                and re.search(self.path, target) is not None)


@dataclass
class KeepAliveProxy:
    upstream_host: str
    upstream_port: int
    rules: list[Reset] = field(default_factory=list)
    forwarded: list[tuple[str, str]] = field(default_factory=list)
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def __aenter__(self) -> KeepAliveProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        assert self._server is not None
        self._server.close()
        for handler in list(self._handlers):
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            nth = 0
            while True:
                nth += 1
                head = await reader.readuntil(b"\r\n\r\n")
                method, target = head.split(b" ", 2)[:2]
                length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                body = await reader.readexactly(int(length.group(1)) if length else 0)
                rule = next((rule for rule in self.rules
                             if rule.matches(method.decode(), target.decode(), nth)), None)
                if rule is not None:
                    rule.fired += 1
                if rule is None or rule.when == "after":
                    reply = await self._forward(head, body)
                    self.forwarded.append((method.decode(), target.decode()))
                if rule is not None:
                    _reset(writer)
                    return
                writer.write(reply)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            writer.close()
            self._handlers.discard(handler)

    async def _forward(self, head: bytes, body: bytes) -> bytes:
        lines = [line for line in head.split(b"\r\n")[:-2]
                 if not line.lower().startswith(b"connection:")]
        upstream_reader, upstream_writer = await asyncio.open_connection(
            self.upstream_host, self.upstream_port)
        try:
            upstream_writer.write(b"\r\n".join([*lines, b"Connection: close", b"", b""]) + body)
            await upstream_writer.drain()
            reply = await upstream_reader.read()
        finally:
            upstream_writer.close()
        reply_head, _, reply_body = reply.partition(b"\r\n\r\n")
        kept = [line for line in reply_head.split(b"\r\n")
                if not line.lower().startswith((b"connection:", b"content-length:"))]
        assert not any(line.lower().startswith(b"transfer-encoding:") for line in kept)
        length = f"Content-Length: {len(reply_body)}".encode()
        return b"\r\n".join([*kept, length, b"Connection: keep-alive", b"", b""]) + reply_body


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
