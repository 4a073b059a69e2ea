"""What every service of the local cloud shares: loopback ports, one-request HTTP probes, how a
long-running process is described, config files and log tails.

Nothing here starts a process; ``cloud.py`` does that from the ``LaunchSpec``s the service
modules (swift_cluster, keystone_server, glance_server) describe.
"""

from __future__ import annotations

import configparser
import contextlib
import http.client
import json
import os
import random
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xfer.errors import XferError

LOOPBACK = "127.0.0.1"
# Below Linux's ephemeral range (32768-60999), so outgoing connections never take them, and away
# from the ports of common services.
PORT_RANGE = range(21000, 32000)
HTTP_TIMEOUT_S = 5.0
# Short, so that waiting on a server still loading does not delay noticing one that died.
PROBE_TIMEOUT_S = 2.0
# Files holding passwords or keys: readable by their owner only.
SECRET_FILE_MODE = 0o600

Conf = dict[str, dict[str, str]]


class DevcloudError(XferError):
    """The local cloud could not be started, found or stopped; the message says why."""


@dataclass(frozen=True)
class LaunchSpec:
    """How to start one long-running process of the cloud."""

    name: str  # unique in a cloud, e.g. "RegionOne/proxy-server", "keystone"
    argv: tuple[str, ...]
    log_path: Path
    stop_signal: int = signal.SIGTERM
    environ: tuple[tuple[str, str], ...] = ()  # added to the cloud's own environment


@dataclass(frozen=True)
class OneShot:
    """A command that must finish (exit 0) before its service can start, e.g. a db_sync."""

    name: str
    argv: tuple[str, ...]
    log_path: Path


def pick_free_ports(count: int) -> list[int]:
    """Distinct loopback ports that nobody holds right now, in random order.

    The bind test is done without SO_REUSEPORT (and without SO_REUSEADDR): it fails if any socket
    holds the port, including an eventlet server that would otherwise happily share it.
    """
    chosen: list[int] = []
    for port in random.sample(PORT_RANGE, len(PORT_RANGE)):
        if port_is_free(port):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise DevcloudError(f"fewer than {count} free ports in {PORT_RANGE}")


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def http_request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    *,
    timeout: float = HTTP_TIMEOUT_S,
) -> tuple[int, dict[str, str], bytes]:
    """One loopback request; status 0 when nothing answers (yet). Header names in lower case."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        reply = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, reply
    except (OSError, http.client.HTTPException):
        return 0, {}, b""
    finally:
        connection.close()


def json_request(
    port: int,
    method: str,
    path: str,
    document: Any,
    headers: dict[str, str] | None = None,
    *,
    timeout: float = HTTP_TIMEOUT_S,
) -> tuple[int, dict[str, str], Any]:
    """``http_request`` with a JSON body and a JSON reply (None when the reply is not JSON)."""
    status, reply_headers, reply = http_request(
        port, method, path, {"Content-Type": "application/json", **(headers or {})},
        json.dumps(document).encode(), timeout=timeout,
    )
    try:
        return status, reply_headers, json.loads(reply) if reply else None
    except ValueError:
        return status, reply_headers, None


def log_tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return f"(no log at {path})"


def write_conf(path: Path, sections: Conf, *, secret: bool = False) -> None:
    """An ini file, without interpolation (values may hold '%'); owner-only when it holds secrets."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_dict(sections)
    with _opened_for_writing(path, secret) as conf_file:
        parser.write(conf_file)


def write_secret_json(path: Path, document: Any) -> None:
    with _opened_for_writing(path, secret=True) as json_file:
        json.dump(document, json_file, indent=2)


def write_secret_text(path: Path, text: str) -> None:
    with _opened_for_writing(path, secret=True) as text_file:
        text_file.write(text)


@contextlib.contextmanager
def _opened_for_writing(path: Path, secret: bool) -> Any:
    # Created with the final mode: a secret is never readable by others, not even for a moment.
    mode = SECRET_FILE_MODE if secret else 0o644
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "w") as opened:
        yield opened


def gunicorn_argv(port: int, pid_file: Path, *, timeout_s: int) -> tuple[str, ...]:
    """gunicorn options for a Keystone or Glance API: one worker process with threads (more
    workers gave no gain on 2 cores and cost ~160 MiB each)."""
    return (
        "--bind", f"{LOOPBACK}:{port}",
        "--workers", "1", "--worker-class", "gthread", "--threads", "4",
        "--timeout", str(timeout_s),
        # An idle API stops at once on SIGTERM; a busy one gets a few seconds, not 30.
        "--graceful-timeout", "5",
        # gunicorn 27 otherwise opens one control socket shared by every instance on the host.
        "--no-control-socket",
        "--pid", str(pid_file),
    )
