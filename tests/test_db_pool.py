"""xfer's database pool gives a connection back without asyncpg's reset query (xfer/jobs/db.py):
what that relies on holds. No session state outlives its user: the migration lock, the
LISTEN connection, an open transaction."""

from __future__ import annotations

import asyncio

import pytest

from xfer.jobs.db import create_pool
from xfer.jobs.store import JobStore
from xfer.settings import Settings

pytestmark = pytest.mark.integration

POOL_SIZE = 3


async def _every_connection(pool, query: str) -> list:
    """`query` on each of the pool's connections at once (held together: all of them)."""
    held = [await pool.acquire() for _ in range(POOL_SIZE)]
    try:
        return [await connection.fetchval(query) for connection in held]
    finally:
        for connection in held:
            await pool.release(connection)


async def test_the_migration_lock_is_not_held_by_the_pool(settings: Settings) -> None:
    pool = await create_pool(settings.database_url, max_size=POOL_SIZE)
    try:
        held = await _every_connection(
            pool, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                  "AND pid = pg_backend_pid()")
        assert held == [0] * POOL_SIZE
    finally:
        await pool.close()


async def test_no_pooled_connection_listens_once_the_listener_is_done(
        settings: Settings) -> None:
    pool = await create_pool(settings.database_url, max_size=POOL_SIZE)
    try:
        store = JobStore(pool)
        async with store.listening(lambda: None, lambda _job: None):
            pass
        channels = await _every_connection(
            pool, "SELECT count(*) FROM pg_listening_channels()")
        assert channels == [0] * POOL_SIZE
    finally:
        await pool.close()


async def test_a_transaction_cut_short_is_rolled_back_before_the_connection_is_reused(
        settings: Settings) -> None:
    pool = await create_pool(settings.database_url, max_size=1)
    try:
        await pool.execute("CREATE TABLE IF NOT EXISTS pool_probe (n integer)")
        connection = await pool.acquire()
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute("INSERT INTO pool_probe VALUES (1)")
        await pool.release(connection)  # the caller went away mid-transaction
        async with pool.acquire() as again:  # the one connection again
            assert not again.is_in_transaction()
            assert await again.fetchval("SELECT count(*) FROM pool_probe") == 0
    finally:
        await pool.execute("DROP TABLE IF EXISTS pool_probe")
        await asyncio.wait_for(pool.close(), 10)
