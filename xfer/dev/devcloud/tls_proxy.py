"""A TLS-terminating proxy for the local cloud: https on some loopback ports, each relayed
byte for byte to a plain http port, as haproxy or nginx stand in front of a real cloud's
services. One process for all of a cloud's https ports (tls.py says which):

    python -m xfer.dev.devcloud.tls_proxy CERT KEY HTTPS_PORT:PLAIN_PORT...

Also usable in a running event loop (`tls_proxy`), e.g. a test's proxy with another
certificate. Relays bytes only: what reaches the service is exactly what the client sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the proxy process itself imports nothing of xfer's (a fast start)
    from xfer.dev.devcloud.loopback import LaunchSpec
    from xfer.dev.devcloud.tls import TlsInfo

LOOPBACK = "127.0.0.1"
RELAY_BUFFER = 256 * 1024  # bytes one read of a relayed connection takes


def server_context(cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    return context


@contextlib.asynccontextmanager
async def tls_proxy(upstream_port: int, cert_file: Path, key_file: Path,
                    listen_port: int = 0) -> AsyncIterator[int]:
    """https on `listen_port` (0: any free port, yielded) relayed to http on `upstream_port`,
    in the running event loop; every relayed connection is closed on exit."""
    relays: set[asyncio.Task[None]] = set()

    async def accepted(client_reader: asyncio.StreamReader,
                       client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        relays.add(task)
        try:
            await _relay(client_reader, client_writer, upstream_port)
        finally:
            relays.discard(task)

    server = await asyncio.start_server(accepted, LOOPBACK, listen_port,
                                        ssl=server_context(cert_file, key_file))
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        for task in list(relays):
            task.cancel()
        await asyncio.gather(*relays, return_exceptions=True)
        await server.wait_closed()


async def _relay(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
                 upstream_port: int) -> None:
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(LOOPBACK, upstream_port)
    except OSError:
        client_writer.close()
        return
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(_pipe(client_reader, upstream_writer))
            group.create_task(_pipe(upstream_reader, client_writer))
    except* (OSError, ssl.SSLError):
        pass  # either side went away: both are closed
    finally:
        upstream_writer.close()
        client_writer.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One direction; its end closes the other side's connection (a TLS stream has no half
    close), which ends the other direction: a server closing its connection is seen by the
    client at once, as without the proxy."""
    try:
        while data := await reader.read(RELAY_BUFFER):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def serve(cert_file: Path, key_file: Path, relays: Sequence[tuple[int, int]]) -> None:
    """Every relay until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with contextlib.AsyncExitStack() as proxies:
        for listen, upstream in relays:
            await proxies.enter_async_context(tls_proxy(upstream, cert_file, key_file, listen))
        print(f"tls_proxy: {len(relays)} https ports relayed", flush=True)
        await stop.wait()


def launch_spec(tls: TlsInfo, state_dir: Path) -> LaunchSpec:
    """The cloud's proxy process, under xfer's own interpreter (it needs only the standard
    library; the cloud venv's would do as well)."""
    from xfer.dev.devcloud.loopback import LaunchSpec

    argv = (sys.executable, "-P", str(Path(__file__)), str(tls.cert_file), str(tls.key_file),
            *(f"{listen}:{upstream}" for listen, upstream in tls.relays))
    return LaunchSpec("tls-proxy", argv, state_dir / "tls" / "tls-proxy.log")


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    relays = [(int(listen), int(upstream))
              for listen, upstream in (pair.split(":") for pair in argv[2:])]
    asyncio.run(serve(Path(argv[0]), Path(argv[1]), relays))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
