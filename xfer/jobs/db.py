"""The asyncpg pool, the migration runner and the named-query loader for sql/*.sql.

The top-level sql/ directory is installed as the package data `xfer.sql` (pyproject maps it),
so the same files are read from a checkout, an editable install and a wheel alike.
"""

from __future__ import annotations

import asyncio
import logging
import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from xfer.errors import DatabaseUnavailable

log = logging.getLogger(__name__)
SQL_DIR: Traversable = files("xfer.sql")
MIGRATIONS_DIR = SQL_DIR / "migrations"
# Any constant works: it only has to be the same for every xfer process on the database.
MIGRATION_LOCK_KEY = 0x7866_6572  # "xfer"
_NAME_LINE = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


def load_queries(path: Traversable = SQL_DIR / "queries.sql") -> dict[str, str]:
    """Split a file of `-- name: x` blocks into {name: sql}."""
    text = path.read_text()
    parts = _NAME_LINE.split(text)
    queries = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"query {name!r} defined twice in {path}")
        queries[name] = body.strip().rstrip(";")
    return queries


def migration_files() -> list[tuple[int, Traversable]]:
    numbered = []
    scripts = (p for p in MIGRATIONS_DIR.iterdir() if p.name.endswith(".sql"))
    for path in sorted(scripts, key=lambda p: p.name):
        numbered.append((int(path.name.split("_", 1)[0]), path))
    versions = [version for version, _ in numbered]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"migrations must be numbered 1..n without gaps: {versions}")
    return numbered


async def migrate(connection: asyncpg.Connection) -> list[int]:
    """Apply the migrations not yet applied; safe when several processes start together."""
    applied_now = []
    await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())")
        done = {row["version"] for row in
                await connection.fetch("SELECT version FROM schema_migrations")}
        for version, path in migration_files():
            if version in done:
                continue
            async with connection.transaction():
                await connection.execute(path.read_text())
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    version, path.name)
            log.info("applied migration %s", path.name)
            applied_now.append(version)
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied_now


async def pending_migrations(url: str) -> list[str]:
    """The migrations this database lacks (`xfer check`), applying none; DatabaseUnavailable
    when it cannot be reached."""
    try:
        connection = await asyncpg.connect(url)
    except (OSError, asyncpg.PostgresError) as exc:
        raise DatabaseUnavailable(f"PostgreSQL at {_without_password(url)}: {exc}") from exc
    try:
        done: set[int] = set()
        if await connection.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
            done = {row["version"] for row in
                    await connection.fetch("SELECT version FROM schema_migrations")}
    finally:
        await connection.close()
    return [path.name for version, path in migration_files() if version not in done]


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


CLOSE_SECONDS = 10.0


async def close_pool(pool: asyncpg.Pool) -> None:
    """Close gracefully, and terminate what is still held after CLOSE_SECONDS (a connection
    a cancelled task never released must not keep a stopping process alive)."""
    try:
        await asyncio.wait_for(pool.close(), CLOSE_SECONDS)
    except TimeoutError:
        log.warning("database connections still in use after %.0fs; terminating them",
                    CLOSE_SECONDS)
        pool.terminate()


async def create_pool(database_url: str, max_size: int = 10) -> asyncpg.Pool:
    """The process's pool, once the database is migrated (on a connection of its own: the
    migration lock is a session's, and pooled connections keep no session state)."""
    connection = await asyncpg.connect(database_url)
    try:
        await migrate(connection)
    finally:
        await connection.close()
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=max_size,
                                     reset=_rolled_back_only)
    assert pool is not None
    return pool


async def _rolled_back_only(connection: asyncpg.Connection) -> None:
    """A connection back in the pool needs no reset beyond the rollback asyncpg does first:
    xfer sets nothing on a session (no SET, no session lock, no cursor outside a
    transaction, and the one LISTEN connection is closed, not given back; see
    JobStore.listening). asyncpg's default reset is one more query on every release, a
    round trip for xfer and for PostgreSQL (`python -m benchmarks.pool_reset` measures it;
    docs/benchmarks.md has the figures)."""
