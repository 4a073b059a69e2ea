"""What the capped link itself carries, without xfer: the bar for "xfer >= 90% of the cap".

    .venv/bin/python -m benchmarks.link_baseline [--streams 4,6,8,12] [--rate-mb 25]
        [--total-mb 100] [--rtt-ms 40]

Two measurements through `benchmarks.shaping_proxy` with the capped link's shape:
- **the proxy alone**: N connections each writing as fast as they can to a loopback sink,
  counted in steady state (from 0.5 s until the first connection is done: once connections
  end, the rest are held to their own per-connection rate, which is not the link's loss);
- **into Swift**: N threads each PUTting 16 MiB objects, already in memory, one after the
  other into a fresh local Swift, 64 in all, the way xfer's segment PUTs arrive.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time
from pathlib import Path

from benchmarks import swift_http
from benchmarks.runs import login_through
from benchmarks.shaping_proxy import Shape, running_proxy
from xfer.dev import devcloud

MiB = 1 << 20
PUT_SIZE = 16 * MiB
PUTS = 64
SINK_BYTES = 64 * MiB  # what each connection writes to the sink


async def _proxy_steady_mb(shape: Shape, streams: int, log: str) -> float:
    received = 0
    all_in = asyncio.Event()

    async def sink(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        while data := await reader.read(MiB):
            received += len(data)
        if received == streams * SINK_BYTES:
            all_in.set()
        writer.close()

    async def writer(port: int) -> None:
        _, out = await asyncio.open_connection("127.0.0.1", port)
        block = b"x" * MiB
        for _ in range(SINK_BYTES // MiB):
            out.write(block)
            await out.drain()
        out.close()

    server = await asyncio.start_server(sink, "127.0.0.1", 0)
    async with server:
        with running_proxy(server.sockets[0].getsockname()[1], shape, log) as proxy:
            tasks = [asyncio.create_task(writer(proxy.port)) for _ in range(streams)]
            await asyncio.sleep(0.5)
            began, before = time.monotonic(), received
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            steady = (received - before) / (time.monotonic() - began) / 1e6
            await asyncio.gather(*tasks)
            await all_in.wait()  # the link still delivers the rest
    return steady


def _puts_mb(session: swift_http.Session, streams: int, body: bytes) -> float:
    container = f"baseline-{streams}"
    session.checked("PUT", f"/{container}", (201, 202))
    names = iter(range(PUTS))
    lock = threading.Lock()

    def put_until_none_left() -> None:
        while True:
            with lock:
                index = next(names, None)
            if index is None:
                return
            session.checked("PUT", f"/{container}/o{index}", (201,), body=body)

    began = time.monotonic()
    threads = [threading.Thread(target=put_until_none_left) for _ in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return PUTS * len(body) / (time.monotonic() - began) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="4,6,8,12")
    parser.add_argument("--rate-mb", type=float, default=25.0)
    parser.add_argument("--total-mb", type=float, default=100.0)
    parser.add_argument("--rtt-ms", type=float, default=40.0)
    args = parser.parse_args()
    shape = Shape(args.rtt_ms / 1000, args.rate_mb * 1e6, args.total_mb * 1e6)
    streams = [int(n) for n in args.streams.split(",")]
    print(f"capped link: {shape.describe()}")
    with tempfile.TemporaryDirectory(prefix="link-baseline-") as tmp:
        log = str(Path(tmp) / "shaping.log")
        for n in streams:
            mb = asyncio.run(_proxy_steady_mb(shape, n, log))
            print(f"proxy alone, {n:2d} connections: {mb:6.1f} MB/s, "
                  f"{100 * mb / (shape.total / 1e6):.0f}% of the cap (steady state)")
        state = Path(tmp) / "cloud"
        cloud = devcloud.up(state, [devcloud.ClusterSpec("RegionTwo")], openstack=False)
        try:
            cluster = cloud.clusters["RegionTwo"]
            body = os.urandom(PUT_SIZE)
            with running_proxy(cluster.ports.proxy, shape, log) as proxy:
                _, session = login_through(cluster, proxy)
                for n in streams:
                    mb = _puts_mb(session, n, body)
                    print(f"into Swift, {n:2d} PUT streams of {PUTS} x 16 MiB: {mb:6.1f} MB/s, "
                          f"{100 * mb / (shape.total / 1e6):.0f}% of the cap")
        finally:
            devcloud.down(state)


if __name__ == "__main__":
    main()
