"""The bulk client's ranged GETs alone, on loopback: its CPU-s per GiB, and how many reads
(event loop wake-ups) a GiB takes. The server is a child process that answers like Swift's
proxy: a 206 reply whose body it sends in 64 KiB writes (Swift's network_chunk_size), paced.

    python -m benchmarks.bulk_loopback [--gib 1] [--chunk-mib 4] [--in-flight 8] [--repeat 3]
                                       [--server-mb 20] [--variants 0,256] [--loops asyncio]
                                       [--schemes http]

Runs interleave the variants given by --variants (values of clients/bulk_link.RCVLOWAT in KiB,
0: off) on each event loop of --loops (asyncio, uvloop) and each of --schemes (http, https:
the server's connections wrapped in TLS with a certificate from a CA made for the run, as the
local cloud's), so a busy machine weighs on each alike.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from xfer.clients import bulk_link
from xfer.clients.bulk_http import BulkHttp
from xfer.dev.devcloud.tls import CertificateFiles, issue, make_ca
from xfer.proto.http import Request

SERVER = r"""
import socket, ssl, sys, threading, time
body = bytes(range(256)) * 256  # 64 KiB
pause = len(body) / (float(sys.argv[1]) * 1e6) if float(sys.argv[1]) else 0.0
tls = None
if len(sys.argv) > 3:  # certificate and key: https
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(sys.argv[2], sys.argv[3])
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
def serve(conn):
    if tls is not None:
        conn = tls.wrap_socket(conn, server_side=True)
    data = b""
    while True:
        while b"\r\n\r\n" not in data:
            more = conn.recv(65536)
            if not more:
                return
            data += more
        head, _, data = data.partition(b"\r\n\r\n")
        start, end = map(int, head.split(b"bytes=")[1].split(b"\r\n")[0].split(b"-"))
        length = end - start + 1
        conn.sendall(b"HTTP/1.1 206 Partial Content\r\nContent-Length: %d\r\n"
                     b"Content-Range: bytes %d-%d/*\r\n\r\n" % (length, start, end))
        while length:
            piece = min(length, len(body))
            conn.sendall(body[:piece])
            length -= piece
            if pause:
                time.sleep(pause)
while True:
    conn, _ = listener.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


class Server:
    """The child process serving ranged GETs, plain or with TLS."""

    def __init__(self, server_mb: float, certificate: CertificateFiles | None) -> None:
        tls = [] if certificate is None else [str(certificate.cert_file),
                                               str(certificate.key_file)]
        self.process = subprocess.Popen([sys.executable, "-c", SERVER, str(server_mb), *tls],
                                        stdout=subprocess.PIPE)
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self.scheme = "http" if certificate is None else "https"

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


async def one_run(server: Server, tls: ssl.SSLContext, total: int, chunk: int,
                  in_flight: int) -> tuple[float, float, int]:
    """CPU-s and wall seconds of this process for `total` bytes, and its reads."""
    bulk = BulkHttp(10.0, 60.0, tls)
    reads = 0
    landed = bulk_link.Link.buffer_updated

    def counted(link: bulk_link.Link, nbytes: int) -> None:
        nonlocal reads
        reads += 1
        landed(link, nbytes)

    bulk_link.Link.buffer_updated = counted  # type: ignore[method-assign]
    buffers = [memoryview(bytearray(chunk)) for _ in range(in_flight)]
    starts = iter(range(0, total, chunk))

    async def worker(buffer: memoryview) -> None:
        for start in starts:
            request = Request("GET", f"{server.scheme}://127.0.0.1:{server.port}/v1/a/c/o",
                              {"Range": f"bytes={start}-{start + chunk - 1}"})
            async with bulk.get("swift", request) as reply:
                await reply.read_into(buffer)

    cpu_at, wall = time.process_time(), time.monotonic()
    try:
        async with asyncio.TaskGroup() as group:
            for buffer in buffers:
                group.create_task(worker(buffer))
    finally:
        bulk_link.Link.buffer_updated = landed  # type: ignore[method-assign]
        bulk.close()
    cpu = time.process_time() - cpu_at
    return cpu, time.monotonic() - wall, reads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--chunk-mib", type=int, default=4)
    parser.add_argument("--in-flight", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--server-mb", type=float, default=20.0,
                        help="MB/s per connection the server sends at (Swift's proxy is "
                             "CPU-bound: about 150 MB/s over all connections); 0: at once")
    parser.add_argument("--variants", default="0,256", help="RCVLOWAT values, KiB")
    parser.add_argument("--loops", default="asyncio", help="asyncio, uvloop or both")
    parser.add_argument("--schemes", default="http", help="http, https or both")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        ca = make_ca(Path(directory))
        tls = ssl.create_default_context(cafile=str(ca.cert_file))
        servers = {scheme: Server(args.server_mb,
                                  issue(ca, Path(directory)) if scheme == "https" else None)
                   for scheme in args.schemes.split(",")}
        try:
            compare(servers, tls, args)
        finally:
            for server in servers.values():
                server.stop()


def compare(servers: dict[str, Server], tls: ssl.SSLContext, args: argparse.Namespace) -> None:
    total = int(args.gib * (1 << 30))
    results: dict[str, list[tuple[float, float, int]]] = {}
    for _ in range(args.repeat):
        for scheme, server in servers.items():
            for loop in args.loops.split(","):
                for variant in args.variants.split(","):
                    bulk_link.RCVLOWAT = int(variant) * 1024
                    runner = uvloop.run if loop == "uvloop" else asyncio.run
                    run = runner(one_run(server, tls, total, args.chunk_mib << 20,
                                         args.in_flight))
                    name = f"{scheme} {loop} rcvlowat {variant:>4} KiB"
                    results.setdefault(name, []).append(run)
                    print(f"{name}: {run[0] * (1 << 30) / total:.3f} CPU-s/GiB, "
                          f"{total / run[1] / (1 << 20):.0f} MiB/s, "
                          f"{run[2] * (1 << 30) / total:.0f} reads/GiB", flush=True)
    for name, runs in results.items():
        cpu = statistics.median(run[0] * (1 << 30) / total for run in runs)
        print(f"median {name}: {cpu:.3f} CPU-s/GiB")


if __name__ == "__main__":
    main()
