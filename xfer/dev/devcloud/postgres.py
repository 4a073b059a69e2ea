"""Embedded PostgreSQL for the local cloud, from the ``pgserver`` wheel (PostgreSQL 16): xfer's
database and those of Keystone and of each region's Glance, each in its own database.

The wheel brings the binaries; this module runs them itself (initdb, ``pg_ctl start``, psql),
as pgserver 0.1.4's ``PostgresServer`` does, except for what it could not be told:
- initdb with ``--no-sync``: its fsync of ~1,600 fresh files took 5-7 s of a 7-8 s initdb on the
  busy 2-core machine (1.2-1.7 s without); the data is thrown away with the cloud anyway.
- ``postgresql.conf`` gets ``SERVER_SETTINGS`` between initdb and the start.
- ``pg_ctl``'s wait is bounded by ``PG_CTL_TIMEOUT_S``, not pgserver's 10 s.
What is kept from pgserver: as root, Postgres runs as the system user ``pgserver`` (created with
``useradd`` if missing; Postgres refuses to run as root), which owns the data directory and may
traverse its parents; it listens only on a unix socket (no TCP port, so no port to clash), in the
data directory or, when that path is too long for a socket, in a runtime directory: pgserver's own
``find_suitable_socket_dir`` picks it before the start, so every config can name it. ``pg_ctl``
starts the postmaster in its own session; we stop it by its PID (SIGINT: fast shutdown, as
``pg_ctl stop -m fast`` does). Importing pgserver warns (platformdirs' RuntimeDirWarning) when
XDG_RUNTIME_DIR is unset, which pytest's warnings-as-errors turns into a failure; that one
warning is silenced at import.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import stat
import subprocess
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from urllib.parse import quote

from xfer.dev.devcloud.loopback import DevcloudError

DATABASE_NAME = "xfer"
SUPERUSER = "postgres"
# SIGTERM would be a "smart" shutdown that waits for every client to disconnect.
STOP_SIGNAL = signal.SIGINT
SERVER_USER = "pgserver"  # the system user Postgres runs as when we are root
PG_CTL_TIMEOUT_S = 60.0  # initdb, pg_ctl start and psql take seconds; this bounds a hung one
# Appended to postgresql.conf after initdb. max_connections, 100 by default: the peak measured in
# a whole `make test` was 22 client connections (Glance's 8 + 5, Keystone's 4, a test's xfer 7),
# but the bound by configuration is 15 per Keystone or Glance process (4 of them: 60) plus 10 per
# xfer pool, so a busy Glance and four xfer services would reach 100. 200 costs 5 MB of shared
# memory (shared_memory_size 143 -> 148 MB).
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
    user = _server_user(info, pgserver)
    _run("initdb", "-D", str(info.pgdata), "--auth=trust", "--auth-local=trust",
         "--encoding=utf8", "-U", SUPERUSER, "--no-sync", user=user)
    settings = "".join(f"{name} = {value}\n" for name, value in SERVER_SETTINGS.items())
    with (info.pgdata / "postgresql.conf").open("a") as conf:
        conf.write(f"\n# the local cloud's (xfer/dev/devcloud/postgres.py)\n{settings}")
    _run("pg_ctl", "-D", str(info.pgdata), "-w", "-t", str(int(PG_CTL_TIMEOUT_S)),
         "-o", '-h ""', "-o", f"-k {info.socket_dir}", "-l", str(info.log_path), "start",
         user=user)
    pid = postmaster_pid(info.pgdata)
    if pid is None:
        raise DevcloudError(f"pg_ctl started no postmaster; see {info.log_path}")
    # One psql run: it sends each statement on its own (CREATE DATABASE refuses a transaction).
    run_sql(info, "".join(f"CREATE DATABASE {name};\n" for name in databases))
    return pid


def clone_database(info: PostgresInfo, template: str, name: str) -> None:
    """A new database as a copy of ``template``, which nobody may be connected to (Postgres
    waits up to 5 s for the backends of clients that just left)."""
    run_sql(info, f"CREATE DATABASE {name} TEMPLATE {template};\n")


def run_sql(info: PostgresInfo, script: str) -> None:
    """psql on ``script``, stopping at the first error."""
    _run("psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", info.url("postgres"),
         stdin=script)


def postmaster_pid(pgdata: Path) -> int | None:
    """The PID in ``postmaster.pid``, if any: lets a failed start still stop what it started."""
    try:
        first_line = (pgdata / "postmaster.pid").read_text().split("\n", 1)[0]
        return int(first_line)
    except (OSError, ValueError):
        return None


def _server_user(info: PostgresInfo, pgserver: ModuleType) -> str | None:
    """As root, the user Postgres runs as, made able to reach its files (as pgserver does)."""
    if os.geteuid() != 0:
        return None
    utils = pgserver.utils
    entry = utils.ensure_user_exists(SERVER_USER)
    binaries = _binary("initdb").parent
    utils.ensure_prefix_permissions(binaries)
    utils.ensure_folder_permissions(binaries, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP
                                    | stat.S_IXOTH)
    utils.ensure_folder_permissions(binaries.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
    utils.ensure_prefix_permissions(info.pgdata)
    os.chown(info.pgdata, entry.pw_uid, entry.pw_gid)
    if info.socket_dir != info.pgdata:
        utils.ensure_prefix_permissions(info.socket_dir)
        info.socket_dir.chmod(0o777)
    return SERVER_USER


def _binary(name: str) -> Path:
    """One of the wheel's binaries, found without importing pgserver (see import_pgserver)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or spec.origin is None:
        raise DevcloudError("the local cloud's Postgres needs pgserver (pip install "
                            "'xfer[embedded]'), or set XFER_DATABASE_URL to use another server")
    return Path(spec.origin).parent / "pginstall" / "bin" / name


def _run(name: str, *arguments: str, user: str | None = None, stdin: str = "") -> None:
    """One of pgserver's binaries, bounded in time; its output goes in the error. Output to a
    file, not a pipe: the postmaster that pg_ctl starts would hold a pipe open."""
    with tempfile.TemporaryFile() as output:
        try:
            done = subprocess.run([str(_binary(name)), *arguments], user=user, cwd="/",
                                  input=stdin.encode(), stdout=output, stderr=subprocess.STDOUT,
                                  timeout=PG_CTL_TIMEOUT_S + 5, check=False)
        except subprocess.TimeoutExpired as exc:
            raise DevcloudError(f"{name} still running after {exc.timeout:.0f} s") from exc
        if done.returncode != 0:
            output.seek(0)
            raise DevcloudError(f"{name} {' '.join(arguments)} failed (exit {done.returncode}): "
                                f"{output.read().decode(errors='replace').strip()}")
