"""The bulk client's ranged GETs alone, on loopback: its CPU-s per GiB, and how many reads
(event loop wake-ups) a GiB takes. The server is a child process that answers like Swift's
proxy: a 206 reply whose body it sends in 64 KiB writes (Swift's network_chunk_size), paced.

    python -m benchmarks.bulk_loopback [--gib 1] [--chunk-mib 4] [--in-flight 8] [--repeat 3]
                                       [--server-mb 20] [--variants 0,256] [--loops asyncio]

Runs interleave the variants given by --variants (values of clients/bulk_link.RCVLOWAT in KiB,
0: off) on each event loop of --loops (asyncio, uvloop), so a busy machine weighs on each
alike.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import ssl
import statistics
import subprocess
import sys
import time

import uvloop

from xfer.clients import bulk_link
from xfer.clients.bulk_http import BulkHttp
from xfer.proto.http import Request

SERVER = r"""
import socket, sys, threading, time
body = bytes(range(256)) * 256  # 64 KiB
pause = len(body) / (float(sys.argv[1]) * 1e6) if float(sys.argv[1]) else 0.0
listener = socket.create_server(("127.0.0.1", 0))
print(listener.getsockname()[1], flush=True)
def serve(conn):
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


async def one_run(port: int, total: int, chunk: int, in_flight: int) -> tuple[float, float, int]:
    """CPU-s and wall seconds of this process for `total` bytes, and its reads."""
    bulk = BulkHttp(10.0, 60.0, ssl.create_default_context())  # http: never used
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
            request = Request("GET", f"http://127.0.0.1:{port}/v1/a/c/o",
                              {"Range": f"bytes={start}-{start + chunk - 1}"})
            async with bulk.get("swift", request) as reply:
                await reply.read_into(buffer)

    before, wall = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    try:
        async with asyncio.TaskGroup() as group:
            for buffer in buffers:
                group.create_task(worker(buffer))
    finally:
        bulk_link.Link.buffer_updated = landed  # type: ignore[method-assign]
        bulk.close()
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
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
    args = parser.parse_args()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(args.server_mb)], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        total = int(args.gib * (1 << 30))
        results: dict[str, list[tuple[float, float, int]]] = {}
        for _ in range(args.repeat):
            for loop in args.loops.split(","):
                for variant in args.variants.split(","):
                    bulk_link.RCVLOWAT = int(variant) * 1024
                    runner = uvloop.run if loop == "uvloop" else asyncio.run
                    run = runner(one_run(port, total, args.chunk_mib << 20, args.in_flight))
                    name = f"{loop} rcvlowat {variant:>4} KiB"
                    results.setdefault(name, []).append(run)
                    print(f"{name}: {run[0] * (1 << 30) / total:.3f} CPU-s/GiB, "
                          f"{total / run[1] / (1 << 20):.0f} MiB/s, "
                          f"{run[2] * (1 << 30) / total:.0f} reads/GiB", flush=True)
        for name, runs in results.items():
            cpu = statistics.median(run[0] * (1 << 30) / total for run in runs)
            print(f"median {name}: {cpu:.3f} CPU-s/GiB")
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
