"""Embedded PostgreSQL for the local cloud, from the ``pgserver`` wheel (PostgreSQL 16).

How pgserver 0.1.4 behaves, and what this module does about it:
- As root it creates a system user ``pgserver`` (``useradd``), chowns the data directory to it,
  adds o+rx to every parent directory, and runs initdb and the server as that user.
- ``pg_ctl`` starts the postmaster in its own session (reparented to PID 1), listening only on a
  unix socket in the data directory (no TCP port, so no port to clash).
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
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from urllib.parse import quote

DATABASE_NAME = "xfer"
SUPERUSER = "postgres"
# SIGTERM would be a "smart" shutdown that waits for every client to disconnect.
STOP_SIGNAL = signal.SIGINT


@dataclass(frozen=True)
class EmbeddedPostgres:
    url: str  # asyncpg-ready: postgresql://postgres@/xfer?host=<socket dir>
    pid: int  # the postmaster
    log_path: Path


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


def start_postgres(pgdata: Path, pgserver: ModuleType | None = None) -> EmbeddedPostgres:
    """initdb (if new), start, and create the ``xfer`` database; returns once it accepts clients.
    Pass ``import_pgserver()``'s module to run this in another thread."""
    pgserver = pgserver or import_pgserver()
    pgdata = pgdata.resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    pgserver.PostgresServer._instances.pop(pgdata, None)
    server = pgserver.PostgresServer(pgdata, cleanup_mode=None)
    postmaster = server.get_postmaster_info()
    server.psql(f"CREATE DATABASE {DATABASE_NAME};")
    return EmbeddedPostgres(
        url=f"postgresql://{SUPERUSER}@/{DATABASE_NAME}?host={quote(str(postmaster.socket_dir))}",
        pid=postmaster.pid,
        log_path=pgdata / "log",
    )


def postmaster_pid(pgdata: Path) -> int | None:
    """The PID in ``postmaster.pid``, if any: lets a failed start still stop what it started."""
    try:
        first_line = (pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
        return int(first_line)
    except (OSError, ValueError):
        return None
