"""Migrations: every one applied to an empty database gives the schema of sql/schema.sql,
and processes starting together apply them once."""

from __future__ import annotations

import asyncio
import itertools
import os
import sys

import asyncpg
import pytest

from tests.conftest import as_postgres, database_url
from xfer.jobs.db import SQL_DIR, migrate, migration_files

pytestmark = pytest.mark.integration
_numbers = itertools.count()

# Column order is left out on purpose: ALTER TABLE ADD COLUMN appends, a fresh CREATE may not.
CATALOG = {
    "columns": """
        SELECT table_name, column_name, data_type, is_nullable, column_default
        FROM information_schema.columns WHERE table_schema = 'public'
          AND table_name <> 'schema_migrations'
        ORDER BY table_name, column_name""",
    "constraints": """
        SELECT conrelid::regclass::text AS table_name, conname, pg_get_constraintdef(oid) AS def
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace
          AND conrelid::regclass::text <> 'schema_migrations'
        ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> 'schema_migrations'
        ORDER BY 1, 2""",
}


async def empty_database(cloud_url: str) -> str:
    name = f"xfer_migrations_{next(_numbers)}"
    await as_postgres(cloud_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)",
                      f"CREATE DATABASE {name}")
    return database_url(cloud_url, name)


async def catalog(url: str) -> dict[str, list[tuple]]:
    connection = await asyncpg.connect(url)
    try:
        return {part: [tuple(row) for row in await connection.fetch(query)]
                for part, query in CATALOG.items()}
    finally:
        await connection.close()


async def test_migrations_give_the_current_schema(cloud):
    migrated, fresh = await empty_database(cloud.database_url), await empty_database(
        cloud.database_url)
    connection = await asyncpg.connect(migrated)
    try:
        applied = await migrate(connection)
    finally:
        await connection.close()
    assert applied == [version for version, _ in migration_files()]
    connection = await asyncpg.connect(fresh)
    try:
        await connection.execute((SQL_DIR / "schema.sql").read_text())
    finally:
        await connection.close()
    assert await catalog(migrated) == await catalog(fresh)


async def test_processes_starting_together_apply_each_migration_once(cloud):
    url = await empty_database(cloud.database_url)
    connections = [await asyncpg.connect(url) for _ in range(3)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in connections))
        rows = await connections[0].fetch("SELECT version FROM schema_migrations ORDER BY 1")
    finally:
        for connection in connections:
            await connection.close()
    versions = [version for version, _ in migration_files()]
    assert sorted(v for applied in results for v in applied) == versions  # each exactly once
    assert [row["version"] for row in rows] == versions


async def test_xfer_migrate_command_brings_an_empty_database_up_to_date(cloud):
    url = await empty_database(cloud.database_url)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("XFER_")}
    environ["XFER_DATABASE_URL"] = url
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "xfer.cli", "migrate", env=environ,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(60):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    assert b"up to date" in out
    connection = await asyncpg.connect(url)
    try:
        versions = [r["version"] for r in
                    await connection.fetch("SELECT version FROM schema_migrations ORDER BY 1")]
    finally:
        await connection.close()
    assert versions == [version for version, _ in migration_files()]
