"""What a pooled query costs xfer with asyncpg's default reset on release, and with the
rollback-only reset xfer's pool uses (xfer/jobs/db.py), on an embedded PostgreSQL.

    .venv/bin/python -m benchmarks.pool_reset [--queries N]

Prints, per way and round, this process's CPU and the wall time per `SELECT 1` taken from
the pool; the two ways alternate so that a busy machine weighs on both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable

import asyncpg
import pgserver

from xfer.jobs.db import create_pool

Open = Callable[[str], Awaitable[asyncpg.Pool]]


async def _asyncpg_default(url: str) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    assert pool is not None
    return pool


async def _xfers(url: str) -> asyncpg.Pool:
    return await create_pool(url, max_size=2)


async def per_query(open_pool: Open, url: str, queries: int) -> tuple[float, float]:
    """(CPU microseconds, wall microseconds) per pooled query."""
    pool = await open_pool(url)
    try:
        for _ in range(200):  # warm: connections open, statements prepared
            await pool.fetchval("SELECT 1")
        cpu_at, wall = time.process_time(), time.perf_counter()
        for _ in range(queries):
            await pool.fetchval("SELECT 1")
        return ((time.process_time() - cpu_at) / queries * 1e6,
                (time.perf_counter() - wall) / queries * 1e6)
    finally:
        await pool.close()


async def compare(url: str, queries: int, rounds: int) -> None:
    for round_ in range(1, rounds + 1):
        for name, open_pool in (("asyncpg's default reset", _asyncpg_default),
                                ("xfer's pool (rollback only)", _xfers)):
            cpu, wall = await per_query(open_pool, url, queries)
            print(f"round {round_}  {name:<28}  {cpu:6.0f} us CPU  {wall:6.0f} us wall"
                  " per pooled query")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--queries", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        server = pgserver.get_server(data, cleanup_mode="stop")
        try:
            asyncio.run(compare(server.get_uri(), args.queries, args.rounds))
        finally:
            server.cleanup()


if __name__ == "__main__":
    main()
