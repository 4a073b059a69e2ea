"""Embedded PostgreSQL for the local cloud, from the ``pgserver`` wheel (PostgreSQL 16): xfer's
database and those of Keystone and of each region's Glance, each in its own database.

How pgserver 0.1.4 behaves, and what this module does about it:
- As root it creates a system user ``pgserver`` (``useradd``), chowns the data directory to it,
  adds o+rx to every parent directory, and runs initdb and the server as that user.
- ``pg_ctl`` starts the postmaster in its own session (reparented to PID 1), listening only on a
  unix socket (no TCP port, so no port to clash) in the data directory, or in a runtime directory
  when that path would be too long for a socket. ``plan_postgres`` asks pgserver's own rule
  which one before the start, so that Keystone's and Glance's configs can name it.
- It runs initdb and the start in one call; ``postgresql.conf`` gets our settings in between,
  by a subclass (``_configured_server``).
- ``get_server()``'s default ``cleanup_mode='stop'`` stops the server from an atexit hook when the
  starting process exits; only ``cleanup_mode=None`` lets it outlive ``xfer devcloud up``.
- ``get_server()`` caches a handle per data directory and would return a stale one after ``down``
  in the same process, so this module constructs ``PostgresServer`` itself.
- Importing pgserver warns (platformdirs' RuntimeDirWarning) when XDG_RUNTIME_DIR is unset, which
  pytest's warnings-as-errors turns into a failure; that one warning is silenced at import.
We stop the server ourselves, by the postmaster's PID (SIGINT: fast shutdown, as pg_ctl does).
"""

from __future__ import annotations

import signal
import subprocess
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

from xfer.dev.devcloud.loopback import DevcloudError

DATABASE_NAME = "xfer"
SUPERUSER = "postgres"
# SIGTERM would be a "smart" shutdown that waits for every client to disconnect.
STOP_SIGNAL = signal.SIGINT
PSQL_TIMEOUT_S = 30.0
# Appended to postgresql.conf after initdb. max_connections: the default 100 less the 3 kept for
# superusers is what the test session's xfer pools (10 per service, several services at once) and
# Keystone's and Glance's pools (oslo.db, bounded in their configs) must share.
SERVER_SETTINGS = {"max_connections": "200"}
# oslo.db's pool per Keystone or Glance process: at most 5 + 10 connections (its default overflow,
# 50, would let one busy Glance take a quarter of max_connections).
OSLO_DB_POOL = {"max_pool_size": "5", "max_overflow": "10"}


@dataclass(frozen=True)
class PostgresInfo:
    """Where the embedded server is: known before it starts, so every config can name it."""

    pgdata: Path
    socket_dir: Path

    @property
    def log_path(self) -> Path:
        return self.pgdata / "log"

    def url(self, database: str) -> str:
        """A libpq URL (asyncpg, psql) of one database."""
        return f"postgresql://{SUPERUSER}@/{database}?host={quote(str(self.socket_dir))}"

    def sqlalchemy_url(self, database: str) -> str:
        """The ``[database] connection`` of an OpenStack service (oslo.db, with psycopg2)."""
        return f"postgresql+psycopg2://{SUPERUSER}@/{database}?host={quote(str(self.socket_dir))}"


def oslo_db_section(info: PostgresInfo, database: str) -> dict[str, str]:
    """The ``[database]`` section of a Keystone or Glance config using ``database``."""
    return {"connection": info.sqlalchemy_url(database), **OSLO_DB_POOL}


def import_pgserver() -> ModuleType:
    """Import pgserver quietly; call it from the main thread (catch_warnings is not thread-safe)."""
    try:
        import platformdirs.api

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", platformdirs.api.RuntimeDirWarning)
            import pgserver
    except ImportError as exc:
        raise ImportError(
            "the local cloud's Postgres needs pgserver (pip install 'xfer[embedded]'), "
            "or set XFER_DATABASE_URL to use another server"
        ) from exc
    return pgserver


def plan_postgres(pgdata: Path, pgserver: ModuleType) -> PostgresInfo:
    """Create the (empty) data directory and find the socket directory pgserver will use."""
    pgdata = pgdata.resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    runtime_path = pgserver.PostgresServer.runtime_path
    return PostgresInfo(pgdata, pgserver.utils.find_suitable_socket_dir(pgdata, runtime_path))


def start_postgres(info: PostgresInfo, databases: Sequence[str], pgserver: ModuleType) -> int:
    """initdb, start, create ``databases``; returns the postmaster's PID once it accepts clients.
    Runs in another thread: pass ``import_pgserver()``'s module, imported in the main thread."""
    pgserver.PostgresServer._instances.pop(info.pgdata, None)
    server = _configured_server(pgserver)(info.pgdata, cleanup_mode=None)
    postmaster = server.get_postmaster_info()
    if Path(postmaster.socket_dir) != info.socket_dir:
        raise DevcloudError(f"Postgres listens in {postmaster.socket_dir}, not in the planned "
                            f"{info.socket_dir}")
    # One psql run: it sends each statement on its own (CREATE DATABASE refuses a transaction).
    run_sql(info, "".join(f"CREATE DATABASE {name};\n" for name in databases))
    pid: int = postmaster.pid
    return pid


def clone_database(info: PostgresInfo, template: str, name: str) -> None:
    """A new database as a copy of ``template``, which nobody may be connected to (Postgres
    waits up to 5 s for the backends of clients that just left)."""
    run_sql(info, f"CREATE DATABASE {name} TEMPLATE {template};\n")


def run_sql(info: PostgresInfo, script: str) -> None:
    """psql from pgserver's installation on ``script``, stopping at the first error."""
    psql = Path(str(import_pgserver().__file__)).parent / "pginstall" / "bin" / "psql"
    done = subprocess.run(
        [str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", info.url("postgres")],
        input=script, capture_output=True, text=True, timeout=PSQL_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise DevcloudError(f"psql failed (exit {done.returncode}) on {script.strip()!r}: "
                            f"{done.stderr.strip()}")


def postmaster_pid(pgdata: Path) -> int | None:
    """The PID in ``postmaster.pid``, if any: lets a failed start still stop what it started."""
    try:
        first_line = (pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
        return int(first_line)
    except (OSError, ValueError):
        return None


def _configured_server(pgserver: ModuleType) -> Any:
    """pgserver's server class, writing SERVER_SETTINGS between its initdb and its start."""

    class ConfiguredServer(pgserver.PostgresServer):  # type: ignore[name-defined,misc]
        def ensure_pgdata_inited(self) -> None:
            super().ensure_pgdata_inited()
            settings = "".join(f"{name} = {value}\n" for name, value in SERVER_SETTINGS.items())
            with (self.pgdata / "postgresql.conf").open("a") as conf:
                conf.write(f"\n# the local cloud's (xfer/dev/devcloud/postgres.py)\n{settings}")

    return ConfiguredServer
