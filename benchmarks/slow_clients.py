"""Clients that send nothing, against `xfer serve` with its defaults (issue 16, section 4): 200
connections of one client that begin a request head and stall, and from two other addresses a
chunked and a Content-Length body that stall after their head; each watched for WATCH seconds.
Prints when each closed and what it got. Not a test (tests/test_connections.py is, with short
limits): a measurement of the defaults.

    .venv/bin/xfer devcloud up --no-openstack --state-dir /tmp/slow-clients
    .venv/bin/python -m benchmarks.slow_clients /tmp/slow-clients [WATCH]
    .venv/bin/xfer devcloud down --state-dir /tmp/slow-clients
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

SLOW_HEADS = 200
CHUNKED = (b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"sou\r\n")
SIZED = (b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
         b"Content-Length: 100\r\n\r\n{\"sou")


async def watch(reader: asyncio.StreamReader, seconds: float) -> tuple[float | None, bytes]:
    """(seconds until the server closed, or None if it had not; what it sent)"""
    began, received = time.monotonic(), b""
    try:
        async with asyncio.timeout(seconds):
            while piece := await reader.read(65536):
                received += piece
    except TimeoutError:
        return None, received
    except ConnectionResetError:  # closed before reading what was sent: a reset
        pass
    return time.monotonic() - began, received


async def measure(port: int, seconds: float) -> None:
    async def opened(client: str, sent: bytes) -> tuple[asyncio.StreamReader,
                                                        asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                       local_addr=(client, 0))
        writer.write(sent)
        return reader, writer

    heads = await asyncio.gather(*(opened("127.0.0.1", b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
                                   for _ in range(SLOW_HEADS)))
    bodies = [await opened("127.0.0.2", CHUNKED), await opened("127.0.0.3", SIZED)]
    ends = await asyncio.gather(*(watch(reader, seconds) for reader, _ in [*heads, *bodies]))
    closed = sorted(t for t, _ in ends[:SLOW_HEADS] if t is not None)
    print(f"slow heads: {len(closed)}/{SLOW_HEADS} closed within {seconds:.0f} s, "
          f"{sum(t < 1 for t in closed)} within 1 s, the last after {max(closed, default=0):.1f} s")
    for name, (took, received) in zip(("stalled chunked body", "stalled Content-Length body"),
                                      ends[SLOW_HEADS:], strict=True):
        head, _, body = received.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].decode() or "no reply"
        when = f"open after {seconds:.0f} s" if took is None else f"closed after {took:.1f} s"
        print(f"{name}: {when}; {status} {body[:80].decode()}")
    for _, writer in [*heads, *bodies]:
        writer.close()


def main() -> None:
    state_dir, seconds = sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else 35.0
    exports = subprocess.run([sys.executable, "-m", "xfer.cli", "devcloud", "env",
                              "--state-dir", state_dir], capture_output=True, text=True,
                             check=True).stdout
    environ = {**os.environ}
    for line in exports.splitlines():
        if line.startswith("export XFER_"):
            name, _, value = line.removeprefix("export ").partition("=")
            environ[name] = value.strip("'")
    server = subprocess.Popen([sys.executable, "-m", "xfer.cli", "serve", "--port", "0"],
                              env=environ, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                              text=True)
    try:
        assert server.stdout is not None
        port = int(json.loads(server.stdout.readline())["listening"].rsplit(":", 1)[1])
        asyncio.run(measure(port, seconds))
    finally:
        server.terminate()
        server.wait(90)


if __name__ == "__main__":
    main()
