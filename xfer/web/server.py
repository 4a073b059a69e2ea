"""The API's connections, below any handler: aiohttp's protocol handler, with

- its own error replies as JSON (a request line or header over its limits, bytes that are no
  HTTP), which it would otherwise answer as text/plain and log with a traceback;
- a bound on the time a request head may take (XFER_HEADER_TIMEOUT): aiohttp's keep-alive
  timer runs from a connection's opening, and from the end of each reply, until a whole head
  (request line and headers) has arrived, and then closes the connection unanswered; it is the
  idle bound of a keep-alive connection too;
- a bound on the connections one client address holds at once (XFER_MAX_CLIENT_CONNECTIONS):
  more are closed as they are accepted, unanswered.

A body's bound (XFER_BODY_TIMEOUT, a 408) is where the API reads bodies: api.read_body. A
handler at work (a stream to a slow but steady reader, server-sent events) is bounded by its
own rules only: the keep-alive timer does not run while a request is being answered.

aiohttp has no public seam for the handler and its server; tests/test_errors.py and
tests/test_connections.py hold these to their word over raw sockets.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from xfer.web.api import SETTINGS
from xfer.web.errors import CODES, error_response

log = logging.getLogger(__name__)


class ClientConnections:
    """Open connections per client address, at most `limit` each (0: no limit)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: Counter[str] = Counter()
        self._client_of: dict[object, str] = {}  # connection -> its client's address
        self._refusing: set[str] = set()  # clients told about in the log

    def admit(self, connection: object, client: str) -> bool:
        if self.limit and self._open[client] >= self.limit:
            if client not in self._refusing:  # one line per episode, not per connection
                self._refusing.add(client)
                log.warning("%s holds %d connections, the most one client may "
                            "(XFER_MAX_CLIENT_CONNECTIONS): its next ones are closed as they "
                            "come until it holds fewer", client, self._open[client])
            return False
        self._open[client] += 1
        self._client_of[connection] = client
        return True

    def release(self, connection: object) -> None:
        client = self._client_of.pop(connection, None)
        if client is None:
            return
        self._open[client] -= 1
        if self._open[client] < self.limit:
            self._refusing.discard(client)
        if not self._open[client]:
            del self._open[client]

    def holding(self, client: str) -> int:
        return self._open[client]


def client_address(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) else str(peer)


class ApiRequestHandler(RequestHandler):
    """aiohttp's protocol handler, whose own error replies are JSON and whose log line for
    each is one line without a traceback: a malformed request is the client's error."""

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:
            log.error("reply to %s broke off: %r", request.remote, exc, exc_info=exc)
            raise ConnectionError("the reply had begun; no error reply can follow it")
        if status >= 500:
            log.error("unhandled error answering %s", request.remote, exc_info=exc)
        else:
            log.info("bad HTTP request from %s -> %d: %s", request.remote, status,
                     (message or str(exc))[:300])
        code = "bad_http_request" if status == 400 else CODES.get(status, "http_error")
        text = message if message and status < 500 else HTTPStatus(status).phrase
        response = error_response(status, code, text)
        response.force_close()
        return response


class ApiServer(web.Server):
    """aiohttp's Server, making ApiRequestHandlers and admitting each connection only while
    its client holds fewer than its limit."""

    def __init__(self, *args: Any, clients: ClientConnections, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clients = clients

    def __call__(self) -> RequestHandler:
        # aiohttp's Server makes its protocol handlers with the arguments it was given
        return ApiRequestHandler(self, loop=self._loop, **self._kwargs)

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        if not self.clients.admit(handler, client_address(transport)):
            handler.force_close()  # before it reads a byte; its connection_lost follows

    def connection_lost(self, handler: RequestHandler, exc: BaseException | None = None
                        ) -> None:
        self.clients.release(handler)
        super().connection_lost(handler, exc)


class ApiRunner(web.AppRunner):
    """An AppRunner (startup, cleanup, signals as usual) whose connections are served by
    ApiServer within the limits of the app's Settings."""

    async def _make_server(self) -> web.Server:
        made = await super()._make_server()  # starts and freezes the app
        settings = self.app[SETTINGS]
        return ApiServer(made.request_handler, request_factory=made.request_factory,
                         handler_cancellation=made.handler_cancellation, loop=made._loop,
                         clients=ClientConnections(settings.max_client_connections),
                         **{**made._kwargs, "keepalive_timeout": settings.header_timeout})
