"""The one transport towards OpenStack services: the aiohttp session (and the bulk data path's
own connections, clients/bulk_http.py, kept and closed with it), request bodies sent from
buffers, exact reads, and the single place where aiohttp's exceptions become xfer's."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from yarl import URL

from xfer.clients.bulk_http import BulkHttp, RangeProgress, untrusted_certificate
from xfer.errors import IntegrityError, TransportError, UntrustedCertificate
from xfer.proto.http import Reply, Request
from xfer.settings import Settings
from xfer.tls import client_context

__all__ = ["RangeProgress"]  # engine/ reads it from here, the one transport module
log = logging.getLogger(__name__)


def http_session(settings: Settings) -> aiohttp.ClientSession:
    """The session every client of xfer's calls through: https verified with the configured
    CAs (xfer.tls.client_context; a bad XFER_CA_FILE is a ConfigError here, at start-up), on
    aiohttp's requests and the bulk data path alike."""
    tls = client_context(settings)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=settings.connect_timeout,
                                    sock_read=settings.read_timeout)
    connector = _Connector(BulkHttp(settings.connect_timeout, settings.read_timeout, tls), tls)
    return aiohttp.ClientSession(timeout=timeout, connector=connector, auto_decompress=False)


class _Connector(aiohttp.TCPConnector):
    """aiohttp's connector (no connection cap: the copy window already bounds how many
    requests are in flight), holding the session's bulk connections too, closed with it."""

    def __init__(self, bulk: BulkHttp, tls: ssl.SSLContext) -> None:
        super().__init__(limit=0, ttl_dns_cache=300, ssl=tls)
        self.bulk = bulk

    async def close(self, *, abort_ssl: bool = False) -> None:
        self.bulk.close()
        await super().close(abort_ssl=abort_ssl)


def bulk_http(http: aiohttp.ClientSession) -> BulkHttp:
    """The bulk connections of an xfer session (http_session); for any other session (tests'),
    a client that closes each connection after its request, with that session's timeouts and
    the system's CAs."""
    if isinstance(http.connector, _Connector):
        return http.connector.bulk
    timeout = http.timeout
    return BulkHttp(timeout.sock_connect or Settings.connect_timeout,
                    timeout.sock_read or Settings.read_timeout, client_context(Settings()),
                    pooled=False)


@asynccontextmanager
async def translated_errors(service: str, request: Request) -> AsyncIterator[None]:
    try:
        yield
    except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
        if isinstance(exc, aiohttp.ClientConnectorCertificateError):
            raise UntrustedCertificate(service, request.method, request.path, untrusted_certificate(
                exc.host, exc.port, exc.certificate_error)) from exc
        reason = type(exc).__name__ + (f": {exc}" if str(exc) else "")
        raise TransportError(service, request.method, request.path, reason) from exc


# What one write hands a transport (see detached_slices).
WRITE_SLICE = 1 << 20


def detached_slices(view: memoryview) -> Iterator[bytes]:
    """`view` as copies of at most WRITE_SLICE bytes, for a transport to keep.

    A transport may keep what it is given until the kernel has taken it: uvloop and CPython
    3.12's selector transport keep a reference, only 3.11's copies the unsent part. xfer
    reuses a chunk's buffer once every consumer has written it, so a view handed over as it
    is could go out with a later chunk's bytes in it; reproduced with uvloop, where the
    Glance front sent such bytes after its hashes of the right ones had matched. Copying in
    1 MiB slices costs about 0.08 CPU-s per GiB here (measured; one 32 MiB copy costs 0.74,
    its fresh pages fault), and bounds what a transport holds per connection to a slice plus
    aiohttp's 64 KiB before it waits for the socket."""
    for start in range(0, len(view), WRITE_SLICE):
        yield bytes(view[start:start + WRITE_SLICE])


class BufferPayload(aiohttp.payload.Payload):
    """A request body sent from a buffer in slices, so the socket's flow control paces it and
    the caller's buffer is never handed to the transport (detached_slices)."""

    def __init__(self, buffer: bytes | bytearray | memoryview) -> None:
        view = memoryview(buffer).cast("B")
        super().__init__(view, content_type="application/octet-stream")
        self._size = len(view)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self._value).decode(encoding, errors)

    async def write(self, writer: Any) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        view: memoryview = self._value
        end = len(view) if content_length is None else min(len(view), content_length)
        for piece in detached_slices(view[:end]):
            await writer.write(piece)


def request_body(body: bytes | bytearray | memoryview | None) -> Any:
    if body is None or len(body) <= WRITE_SLICE:
        return body
    return BufferPayload(body)


def wire_url(request: Request) -> URL:
    """The request's URL exactly as built: yarl would otherwise resolve `.` and `..` segments
    and unquote `%2E`, so `dir/../victim.img` would read `victim.img`."""
    return URL(request.url, encoded=True)


# A pooled connection that the server closed while it idled fails when it is used again: reset,
# or closed before any reply (measured: Keystone's trust POST after a short idle, "Connection
# reset by peer"). aiohttp sends idempotent methods once more by itself; a POST that is safe
# to repeat says so (`repeatable`). A refused or timed-out connect is not this.
STALE_CONNECTION_ERRORS = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


def _stale_connection(error: TransportError) -> bool:
    cause = error.__cause__
    return (isinstance(cause, STALE_CONNECTION_ERRORS)
            and not isinstance(cause, aiohttp.ClientConnectorError))


async def exchange(http: aiohttp.ClientSession, service: str, request: Request, *,
                   repeatable: bool = False) -> Reply:
    """Send a request whose reply body is small (JSON, manifests, errors) and read it whole.
    `repeatable`: sent once more when a pooled connection turned out to be closed."""
    if repeatable:
        try:
            return await _exchange_once(http, service, request)
        except TransportError as error:
            if not _stale_connection(error):
                raise
            log.info("%s: %s %s on a closed pooled connection (%s); sending it again",
                     service, request.method, request.path, error.reason)
    return await _exchange_once(http, service, request)


async def _exchange_once(http: aiohttp.ClientSession, service: str, request: Request) -> Reply:
    async with translated_errors(service, request), http.request(
        request.method, wire_url(request), headers=request.headers, params=request.params,
        data=request_body(request.body),
    ) as response:
        return Reply(response.status, response.headers, await response.read())


async def read_exactly(request: Request, response: aiohttp.ClientResponse,
                       buffer: memoryview, progress: RangeProgress | None = None) -> None:
    """Fill `buffer` from the response body; a body shorter or longer is an IntegrityError.
    `progress` counts the bytes landed so far, also when the read fails half-way."""
    filled = 0
    async for chunk in response.content.iter_any():
        end = filled + len(chunk)
        if end > len(buffer):
            raise IntegrityError(f"{request.method} {request.path}: body longer than the "
                                 f"{len(buffer)} bytes asked")
        buffer[filled:end] = chunk
        filled = end
        if progress is not None:
            progress.filled += len(chunk)
    if filled != len(buffer):
        raise IntegrityError(f"{request.method} {request.path}: body ended after {filled} of "
                             f"{len(buffer)} bytes")
