"""Database faults for tests: a relay that cuts one service's PostgreSQL connections, and a real
stop and start of the session's embedded PostgreSQL (same data directory, same socket).

    async with DatabaseRelay(cloud.database_url) as relay:
        ... run a service on relay.url(settings.database_url) ...
        relay.cut()                      # every connection through it dropped, new ones refused
        relay.restore()
        relay.cut_when_sent(query_text)  # cut the moment a client sends it (before Postgres
                                         # sees it): asyncpg sends a query's text the first
                                         # time it prepares it on a connection

    async with postgres_stopped(cloud):  # pg_ctl stop -m fast ... pg_ctl start, bounded
        ...

The embedded Postgres listens only on a unix socket; the relay listens on 127.0.0.1 and
connects to that socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, urlsplit, urlunsplit

from xfer.dev.devcloud import CloudInfo
from xfer.dev.devcloud.processes import proc_status
from xfer.dev.devcloud.state import locked, read_state, write_state

CHUNK = 64 * 1024
PG_CTL_SECONDS = 30.0  # pg_ctl's own wait (-t) is shorter: this only catches a hung pg_ctl
LINK_ERRORS = (OSError, asyncio.IncompleteReadError)


def socket_dir(database_url: str) -> Path:
    """The embedded Postgres's socket directory: the `host` parameter of its URL."""
    return Path(parse_qs(urlsplit(database_url).query)["host"][0])


class DatabaseRelay:
    def __init__(self, database_url: str) -> None:
        self.socket_path = str(socket_dir(database_url) / ".s.PGSQL.5432")
        self.cuts = 0  # how many times the relay cut its connections
        self.refused = 0  # connections refused while cut
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._is_cut = False
        self._trigger: bytes | None = None
        self._closing = False

    @property
    def port(self) -> int:
        assert self._server is not None, "the relay is not running"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    def url(self, database_url: str) -> str:
        """`database_url` (a unix-socket URL of the embedded Postgres) through this relay."""
        parts = urlsplit(database_url)
        user = parts.username or "postgres"
        return urlunsplit(("postgresql", f"{user}@127.0.0.1:{self.port}", parts.path, "", ""))

    def cut(self) -> None:
        self._is_cut = True
        self._trigger = None
        self.cuts += 1
        for link in list(self._links):
            _abort(link)

    def restore(self) -> None:
        self._is_cut = False

    def cut_when_sent(self, text: str) -> None:
        self._trigger = text.encode()

    async def __aenter__(self) -> DatabaseRelay:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        self._closing = True
        assert self._server is not None
        self._server.close()
        for link in list(self._links):
            _abort(link)
        for handler in list(self._handlers):
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, client_reader: asyncio.StreamReader,
                     client_writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            if self._is_cut:
                self.refused += 1
            elif not self._closing:
                await self._relay(client_reader, client_writer)
        except asyncio.CancelledError:
            # Only __aexit__ cancels a handler. End normally: Python 3.11's stream server logs
            # a cancelled handler task as an "unhandled exception".
            if not self._closing:
                raise
        finally:
            client_writer.transport.abort()
            self._handlers.discard(handler)

    async def _relay(self, client_reader: asyncio.StreamReader,
                     client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_unix_connection(
                self.socket_path)
        except OSError:
            return  # Postgres is down: the client sees its connection closed
        link = (client_writer, upstream_writer)
        self._links.add(link)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._pipe(client_reader, upstream_writer, link, watch=True))
                group.create_task(self._pipe(upstream_reader, client_writer, link, watch=False))
        except* LINK_ERRORS:
            pass  # cut, or one side went away: the link is over
        finally:
            self._links.discard(link)
            _abort(link)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                    link: tuple[asyncio.StreamWriter, asyncio.StreamWriter], *,
                    watch: bool) -> None:
        """Copy one direction; when it ends, the whole link ends (PostgreSQL's protocol has
        no half-closed use)."""
        tail = b""
        try:
            while chunk := await source.read(CHUNK):
                if watch and self._trigger is not None:
                    seen = tail + chunk  # the text may straddle two reads
                    if self._trigger in seen:
                        self.cut()
                        return
                    tail = seen[-len(self._trigger):]
                sink.write(chunk)
                await sink.drain()
        finally:
            _abort(link)


def _abort(link: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
    for writer in link:
        writer.transport.abort()


# --- stopping and starting the real PostgreSQL -------------------------------------------

def _pg_ctl_argv(pgdata: Path, *arguments: str) -> list[str]:
    from xfer.dev.devcloud.postgres import import_pgserver

    pg_ctl = Path(import_pgserver().__file__).parent / "pginstall" / "bin" / "pg_ctl"
    return [str(pg_ctl), "-D", str(pgdata), "-w", "-t", str(int(PG_CTL_SECONDS) - 5),
            *arguments]


def _pg_user() -> str | None:
    # As root, pgserver runs Postgres as its own system user (see devcloud/postgres.py).
    return "pgserver" if os.geteuid() == 0 else None


async def pg_ctl(pgdata: Path, *arguments: str) -> None:
    """Run pg_ctl on the embedded Postgres, bounded in time; its output is in the failure."""
    with tempfile.TemporaryFile() as output:
        # a file, not a pipe: the postmaster pg_ctl starts must not hold our pipe open
        process = await asyncio.create_subprocess_exec(
            *_pg_ctl_argv(pgdata, *arguments), user=_pg_user(),
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT)
        try:
            async with asyncio.timeout(PG_CTL_SECONDS):
                code = await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        if code != 0:
            output.seek(0)
            raise AssertionError(f"pg_ctl {' '.join(arguments)} exited {code}: "
                                 f"{output.read().decode(errors='replace')}")


def start_arguments(cloud: CloudInfo) -> tuple[str, ...]:
    """How pgserver starts it: no TCP listener, the socket in the same directory as before
    (so every database URL stays valid), the log in the data directory."""
    pgdata = cloud.state_dir / "pgdata"
    return ("-o", '-h ""', "-o", f"-k {socket_dir(cloud.database_url)}",
            "-l", str(pgdata / "log"), "start")


@contextlib.asynccontextmanager
async def postgres_stopped(cloud: CloudInfo) -> AsyncIterator[None]:
    """The session's PostgreSQL stopped (fast shutdown: every connection dropped at once)
    while inside, and started again on the way out, whatever happened inside."""
    pgdata = cloud.state_dir / "pgdata"
    await pg_ctl(pgdata, "stop", "-m", "fast")
    try:
        yield
    finally:
        await pg_ctl(pgdata, *start_arguments(cloud))
        record_restarted_postgres(cloud.state_dir)


def record_restarted_postgres(state_dir: Path) -> None:
    """The cloud's state names the postmaster started again, as `devcloud.services` does for
    the services it restarts: `devcloud env` and `down` then see a running cloud."""
    pid = int((state_dir / "pgdata" / "postmaster.pid").read_text().split()[0])
    status = proc_status(pid)
    assert status is not None, f"the restarted postmaster {pid} is gone"
    with locked(state_dir):
        state = read_state(state_dir)
        assert state is not None
        cloud = state[0]
        processes = tuple(replace(p, pid=pid, start_ticks=status[1]) if p.name == "postgres"
                          else p for p in cloud.processes)
        write_state(replace(cloud, processes=processes), ready=True)


def stop_restarted_postgres(state_dir: Path) -> None:
    """After `devcloud.down`: stop a postmaster a test started again (devcloud knows only the
    PID it started itself). Nothing to do when no test restarted it."""
    pgdata = state_dir / "pgdata"
    if not (pgdata / "postmaster.pid").exists():
        return
    subprocess.run(_pg_ctl_argv(pgdata, "stop", "-m", "fast"), user=_pg_user(),
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=PG_CTL_SECONDS, check=False)
