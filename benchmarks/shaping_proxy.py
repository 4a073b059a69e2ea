"""A TCP proxy that makes a loopback Swift look like a region across a long, narrow link.

Every accepted connection gets its own upstream connection and two pumps (one per direction).
Each pump paces what it reads with a token bucket (`rate` bytes/s per connection per direction,
a bucket of one read) and, with a `total` rate, with a second bucket per direction shared by
every connection (the link's capacity: a chunk leaves when both allow, first come first
served), and hands each chunk to a writer that releases it `rtt/2` after the
chunk left the emulated link. A new connection waits one `rtt` before its upstream connection
is opened: the TCP handshake. TCP's slow start and window limits are not emulated.

Runs in its own process so that no timed event loop is shared with it::

    python -m benchmarks.shaping_proxy --upstream 127.0.0.1:8080 --rtt-ms 40 --rate-mb 50
    python -m benchmarks.shaping_proxy --upstream 127.0.0.1:8080 --rtt-ms 40 --rate-mb 25 \
        --total-mb 100
    -> prints "shaping proxy listening on 127.0.0.1:PORT", serves until SIGTERM

tempauth builds the storage URL from the Host header, so a client whose auth URL points at the
proxy sends all its later requests through the proxy too (`run.py` checks this).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import select
import signal
import subprocess
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from xfer.dev.children import stop_child

LOOPBACK = "127.0.0.1"
BURST_BYTES = 256 * 1024  # the token bucket's size; asyncio reads up to 256 KiB at a time
# Reading pauses once the link holds this much more than it has sent, and resumes when it has
# sent it all: four reads per pause instead of one (a queue at the link's input).
READ_AHEAD_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Shape:
    rtt: float  # seconds
    rate: float  # bytes per second, per connection and direction
    total: float = 0.0  # bytes per second per direction, all connections together; 0: no cap

    def describe(self) -> str:
        capped = f", {self.total / 1e6:.0f} MB/s in all" if self.total else ""
        return f"RTT {self.rtt * 1000:.0f} ms, {self.rate / 1e6:.0f} MB/s per connection{capped}"


class _SharedLink:
    """One direction of the link's capacity, shared by every connection: when it has sent all
    it was given (the same token bucket as a connection's, at the total rate)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.free = 0.0

    def take(self, now: float, size: int) -> float:
        """When `size` bytes given now have left the link."""
        self.free = max(self.free, now - BURST_BYTES / self.rate) + size / self.rate
        return self.free


_EOF, _CLOSE = object(), object()  # what a delivery line carries besides data


class _Side(asyncio.Protocol):
    """One end of a proxied connection (the client's or the upstream's).

    What this side receives crosses the emulated link to `peer`: each chunk joins a FIFO
    delivery line, due when its last byte has left the link plus rtt/2. Reading pauses while
    the link has a backlog (the token bucket) or while the peer's write buffer is full
    (backpressure). Callbacks only: the line is the link's contents, one timer serves it.
    """

    def __init__(self, shape: Shape, sides: set[_Side], shared: _SharedLink | None) -> None:
        self.shape = shape
        self.sides = sides
        self.shared = shared  # the link's capacity in the direction this side sends
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.link_free = 0.0  # when the link toward the peer has sent all it was given
        self.line: deque[tuple[float, bytes | object]] = deque()
        self.line_timer: asyncio.TimerHandle | None = None
        self.rate_paused = self.peer_full = self.reading_paused = self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.sides.add(self)
        self._update_reading()

    def data_received(self, data: bytes) -> None:
        now = self.loop.time()
        self.link_free = max(self.link_free, now - BURST_BYTES / self.shape.rate)
        self.link_free += len(data) / self.shape.rate
        if self.shared is not None:
            self.link_free = max(self.link_free, self.shared.take(now, len(data)))
        self._send(data)
        if self.link_free > now + READ_AHEAD_BYTES / self.shape.rate and not self.rate_paused:
            self.rate_paused = True
            self._update_reading()
            self.loop.call_at(self.link_free, self._link_idle)

    def eof_received(self) -> bool:
        self._send(_EOF)
        return True  # keep the other direction open

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.sides.discard(self)
        self._send(_CLOSE)

    def pause_writing(self) -> None:  # our write buffer is full: the peer must stop reading
        if self.peer is not None:
            self.peer.peer_full = True
            self.peer._update_reading()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.peer_full = False
            self.peer._update_reading()

    def connect(self, peer: _Side) -> None:
        self.peer = peer
        self._update_reading()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _send(self, item: bytes | object) -> None:
        self.line.append((max(self.loop.time(), self.link_free) + self.shape.rtt / 2, item))
        if self.line_timer is None:
            self.line_timer = self.loop.call_at(self.line[0][0], self._deliver_due)

    def _deliver_due(self) -> None:
        self.line_timer = None
        now = self.loop.time()
        while self.line and self.line[0][0] <= now:
            self._deliver(self.line.popleft()[1])
        if self.line:
            self.line_timer = self.loop.call_at(self.line[0][0], self._deliver_due)

    def _deliver(self, item: bytes | object) -> None:
        sink = self.peer.transport if self.peer is not None else None
        if sink is None or sink.is_closing():
            return
        if item is _CLOSE:
            sink.close()
        elif item is _EOF:
            if sink.can_write_eof():
                sink.write_eof()
        else:
            assert isinstance(item, bytes)
            sink.write(item)

    def _link_idle(self) -> None:
        self.rate_paused = False
        self._update_reading()

    def _update_reading(self) -> None:
        if self.transport is None or self.lost or self.transport.is_closing():
            return
        paused = self.rate_paused or self.peer_full or self.peer is None
        if paused != self.reading_paused:
            self.reading_paused = paused
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()


class _Proxy:
    def __init__(self, upstream: tuple[str, int], shape: Shape) -> None:
        self.upstream = upstream
        self.shape = shape
        self.sides: set[_Side] = set()
        # toward Swift (requests, PUT bodies) and from it (GET bodies)
        self.upstream_link = _SharedLink(shape.total) if shape.total else None
        self.downstream_link = _SharedLink(shape.total) if shape.total else None
        self.connecting: set[asyncio.Task[None]] = set()  # one per client still in handshake

    def accept(self) -> _Side:
        client = _Side(self.shape, self.sides, self.upstream_link)
        task = asyncio.get_running_loop().create_task(self._open_upstream(client))
        self.connecting.add(task)
        task.add_done_callback(self.connecting.discard)
        return client

    async def _open_upstream(self, client: _Side) -> None:
        await asyncio.sleep(self.shape.rtt)  # the TCP handshake
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await loop.create_connection(
                lambda: _Side(self.shape, self.sides, self.downstream_link), *self.upstream)
        except OSError:
            client.close()
            return
        if client.lost:
            upstream.close()
            return
        upstream.connect(client)
        client.connect(upstream)

    def close_all(self) -> None:
        for task in self.connecting:
            task.cancel()
        for side in list(self.sides):
            side.close()


async def serve(listen_port: int, upstream: tuple[str, int], shape: Shape) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    proxy = _Proxy(upstream, shape)
    server = await loop.create_server(proxy.accept, LOOPBACK, listen_port)
    port = server.sockets[0].getsockname()[1]
    print(f"shaping proxy listening on {LOOPBACK}:{port}", flush=True)
    try:
        await stop.wait()
    finally:
        server.close()
        proxy.close_all()
        await server.wait_closed()


# --- the harness side: one proxy process per region ---------------------------------------

@dataclass(frozen=True)
class RunningProxy:
    pid: int
    port: int


@contextlib.contextmanager
def running_proxy(upstream_port: int, shape: Shape, log_path: str) -> Iterator[RunningProxy]:
    """Start a proxy process in front of a loopback port; stop it (by PID) on the way out."""
    argv = [sys.executable, "-m", "benchmarks.shaping_proxy", "--upstream",
            f"{LOOPBACK}:{upstream_port}", "--rtt-ms", str(shape.rtt * 1000),
            "--rate-mb", str(shape.rate / 1e6), "--total-mb", str(shape.total / 1e6)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=log)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 10.0)
        line = process.stdout.readline().decode() if ready else ""
        if "listening on" not in line:
            raise RuntimeError(f"shaping proxy did not start (see {log_path}): {line!r}")
        yield RunningProxy(process.pid, int(line.rsplit(":", 1)[1]))
    finally:
        stop_child(process, 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="HOST:PORT to forward to")
    parser.add_argument("--listen-port", type=int, default=0)
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    parser.add_argument("--rate-mb", type=float, default=50.0, help="MB/s per connection")
    parser.add_argument("--total-mb", type=float, default=0.0,
                        help="MB/s per direction for all connections together (0: no cap)")
    args = parser.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    shape = Shape(args.rtt_ms / 1000, args.rate_mb * 1e6, args.total_mb * 1e6)
    asyncio.run(serve(args.listen_port, (host, int(port)), shape))


if __name__ == "__main__":
    main()
