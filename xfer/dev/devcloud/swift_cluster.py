"""One Swift "all in one" cluster on loopback: its ports, configs, rings and processes.

A cluster is a memcached plus one account, container, object and proxy server, each its own
process, with rings of one device and one replica. Every file lives under the cluster's directory
(absolute paths: Swift servers chdir to /). This module only describes and checks a cluster;
``cloud.py`` starts and stops the processes.

    <cluster dir>/etc/      swift.conf, <server>.conf, <type>.ring.gz   (the cluster's swift_dir)
    <cluster dir>/srv/node/d1/                                           (the one device)
    <cluster dir>/log/<process>.log                                      (stdout+stderr, -v)
"""

from __future__ import annotations

import configparser
import contextlib
import http.client
import json
import os
import pwd
import random
import re
import secrets
import shutil
import signal
import socket
from dataclasses import dataclass
from pathlib import Path

from xfer.errors import XferError

LOOPBACK = "127.0.0.1"
# Below Linux's ephemeral range (32768-60999), so outgoing connections never take them, and away
# from the ports of common services.
PORT_RANGE = range(21000, 32000)
# 1 MiB instead of Swift's 64 KiB: measured +10-15% GET throughput on loopback.
CHUNK_SIZE = 1024 * 1024
SWIFT_MAIN = Path(__file__).with_name("swift_main.py")
SERVER_TYPES = ("account", "container", "object")
HTTP_TIMEOUT_S = 5.0
# Short, so that waiting on a server still loading does not delay noticing one that died.
PROBE_TIMEOUT_S = 2.0

# Order of Swift 2.38's proxy-server.conf-sample, tempauth variant.
PROXY_PIPELINE = (
    "catch_errors gatekeeper healthcheck proxy-logging cache listing_formats container_sync bulk"
    " tempurl ratelimit tempauth copy container-quotas account-quotas slo dlo versioned_writes"
    " symlink proxy-logging proxy-server"
)
_REGION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class DevcloudError(XferError):
    """The local cloud could not be started, found or stopped; the message says why."""


@dataclass(frozen=True)
class ClusterSpec:
    """What a test or demo asks of one cluster; None means Swift's default."""

    region: str
    max_file_size: int | None = None  # [swift-constraints] max_file_size
    max_manifest_segments: int | None = None  # [filter:slo] max_manifest_segments

    def __post_init__(self) -> None:
        if not _REGION_NAME.match(self.region):
            raise ValueError(f"region {self.region!r}: use letters, digits, '-' and '_'")
        for name in ("max_file_size", "max_manifest_segments"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be positive, not {value}")


@dataclass(frozen=True)
class ClusterPorts:
    proxy: int
    account: int
    container: int
    object: int
    memcached: int


@dataclass(frozen=True)
class ClusterInfo:
    """A running cluster, as its clients and the launcher see it."""

    region: str
    proxy_url: str
    auth_url: str  # tempauth v1
    user: str  # .admin of account AUTH_test
    key: str
    user2: str  # not .admin, of another account (AUTH_test2): denied everything until an ACL
    key2: str
    directory: Path
    ports: ClusterPorts
    max_file_size: int | None
    max_manifest_segments: int | None

    @property
    def swift_dir(self) -> Path:
        return self.directory / "etc"

    @property
    def devices_dir(self) -> Path:
        return self.directory / "srv" / "node"

    @property
    def log_dir(self) -> Path:
        return self.directory / "log"


@dataclass(frozen=True)
class LaunchSpec:
    """How to start one long-running process of a cluster."""

    name: str  # unique in a cloud, e.g. "RegionOne/proxy-server"
    argv: tuple[str, ...]
    log_path: Path
    stop_signal: int = signal.SIGTERM


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


def prepare_cluster(spec: ClusterSpec, directory: Path, ports: ClusterPorts) -> ClusterInfo:
    """Create the cluster's directories and config files; rings are built by ``ring_command``."""
    info = ClusterInfo(
        region=spec.region,
        proxy_url=f"http://{LOOPBACK}:{ports.proxy}",
        auth_url=f"http://{LOOPBACK}:{ports.proxy}/auth/v1.0",
        user="test:tester",
        key="testing",
        user2="test2:tester2",
        key2="testing2",
        directory=directory.resolve(),
        ports=ports,
        max_file_size=spec.max_file_size,
        max_manifest_segments=spec.max_manifest_segments,
    )
    for path in (info.swift_dir, info.devices_dir / "d1", info.log_dir):
        path.mkdir(parents=True, exist_ok=True)
    _write_conf(info.swift_dir / "swift.conf", _swift_conf(info))
    _write_conf(info.swift_dir / "proxy-server.conf", _proxy_conf(info))
    for server_type in SERVER_TYPES:
        conf = _backend_conf(info, server_type)
        _write_conf(info.swift_dir / f"{server_type}-server.conf", conf)
    return info


def ring_command(info: ClusterInfo, python: Path) -> list[str]:
    ports = info.ports
    return [
        str(python),
        str(SWIFT_MAIN),
        "rings",
        str(info.swift_dir),
        "--ip",
        LOOPBACK,
        "--account-port",
        str(ports.account),
        "--container-port",
        str(ports.container),
        "--object-port",
        str(ports.object),
    ]


def launch_specs(info: ClusterInfo, python: Path) -> list[LaunchSpec]:
    """memcached first: the proxy's tempauth answers 503 until its memcached is up."""
    specs = [_memcached_launch(info)]
    for server in (*(f"{kind}-server" for kind in SERVER_TYPES), "proxy-server"):
        argv = (
            str(python),
            str(SWIFT_MAIN),
            "server",
            str(info.swift_dir),
            str(info.swift_dir / f"{server}.conf"),
            server,
        )
        specs.append(LaunchSpec(f"{info.region}/{server}", argv, info.log_dir / f"{server}.log"))
    return specs


def _memcached_launch(info: ClusterInfo) -> LaunchSpec:
    binary = shutil.which("memcached") or "/usr/bin/memcached"
    if not os.access(binary, os.X_OK):
        raise DevcloudError("memcached not found: install Debian's memcached package")
    # -U 0: no UDP; as root memcached refuses to start without -u.
    argv = [binary, "-l", LOOPBACK, "-p", str(info.ports.memcached), "-U", "0", "-m", "64"]
    if os.geteuid() == 0:
        argv += ["-u", "root"]
    return LaunchSpec(f"{info.region}/memcached", tuple(argv), info.log_dir / "memcached.log")


def readiness_problem(info: ClusterInfo) -> str | None:
    """Why the cluster cannot serve an authenticated client yet, or None when it can."""
    for server_type in SERVER_TYPES:
        port = getattr(info.ports, server_type)
        status, _, _ = http_request(port, "GET", "/healthcheck", timeout=PROBE_TIMEOUT_S)
        if status != 200:
            return f"{server_type} server /healthcheck answered {status}"
    status, _, _ = http_request(info.ports.proxy, "GET", "/info", timeout=PROBE_TIMEOUT_S)
    if status != 200:
        return f"proxy /info answered {status}"
    return _auth_problem(info)


def _auth_problem(info: ClusterInfo) -> str | None:
    """tempauth v1 login, then HEAD the storage URL: exercises memcached and the account ring."""
    auth_headers = {"X-Auth-User": info.user, "X-Auth-Key": info.key}
    status, headers, _ = http_request(
        info.ports.proxy, "GET", "/auth/v1.0", auth_headers, timeout=PROBE_TIMEOUT_S
    )
    storage_url, token = headers.get("x-storage-url"), headers.get("x-auth-token")
    if status != 200 or not storage_url or not token:
        return f"tempauth login answered {status}"
    path = "/" + storage_url.split("/", 3)[3]
    status, _, _ = http_request(
        info.ports.proxy, "HEAD", path, {"X-Auth-Token": token}, timeout=PROBE_TIMEOUT_S
    )
    if status // 100 != 2:
        return f"HEAD {path} answered {status}"
    return None


def check_constraints(info: ClusterInfo) -> None:
    """Fail loudly if /info does not show the cluster's own constraints (they come from the
    swift.conf redirect in swift_main.py, which a Swift upgrade could silently break)."""
    status, _, body = http_request(info.ports.proxy, "GET", "/info")
    if status != 200:
        raise DevcloudError(f"{info.region}: /info answered {status} after startup")
    reported = json.loads(body)
    expected = {
        ("swift", "max_file_size"): info.max_file_size,
        ("slo", "max_manifest_segments"): info.max_manifest_segments,
    }
    for (section, name), value in expected.items():
        if value is not None and reported.get(section, {}).get(name) != value:
            found = reported.get(section, {}).get(name)
            raise DevcloudError(f"{info.region}: /info {section}.{name} is {found}, not {value}")


def http_request(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    *,
    timeout: float = HTTP_TIMEOUT_S,
) -> tuple[int, dict[str, str], bytes]:
    """One loopback request; status 0 when nothing answers (yet). Header names in lower case."""
    connection = http.client.HTTPConnection(LOOPBACK, port, timeout=timeout)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    except (OSError, http.client.HTTPException):
        return 0, {}, b""
    finally:
        connection.close()


def log_tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return f"(no log at {path})"


Conf = dict[str, dict[str, str]]


def _write_conf(path: Path, sections: Conf) -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_dict(sections)
    with path.open("w") as conf_file:
        parser.write(conf_file)


def _swift_conf(info: ClusterInfo) -> Conf:
    # Fresh secrets per cluster: the two clusters must not agree on where objects hash to.
    constraints = {}
    if info.max_file_size is not None:
        constraints["max_file_size"] = str(info.max_file_size)
    return {
        "swift-hash": {
            "swift_hash_path_prefix": secrets.token_hex(8),
            "swift_hash_path_suffix": secrets.token_hex(8),
        },
        "storage-policy:0": {"name": "Policy-0", "default": "yes"},
        "swift-constraints": constraints,
    }


def _server_defaults(info: ClusterInfo, port: int) -> dict[str, str]:
    return {
        "bind_ip": LOOPBACK,
        "bind_port": str(port),
        # Ports were checked free just before: a clash is a race lost to another program, not
        # worth Swift's default 30 s of retries.
        "bind_timeout": "1",
        "workers": "0",  # serve in the launched process itself: its PID is the one we record
        "user": pwd.getpwuid(os.geteuid()).pw_name,
        "swift_dir": str(info.swift_dir),
        "devices": str(info.devices_dir),
        "mount_check": "false",
        "disable_fallocate": "true",
        "recon_cache_path": str(info.directory / "cache"),
    }


def _backend_conf(info: ClusterInfo, server_type: str) -> Conf:
    app = {"use": f"egg:swift#{server_type}"}
    if server_type == "object":
        app |= {"network_chunk_size": str(CHUNK_SIZE), "disk_chunk_size": str(CHUNK_SIZE)}
    return {
        "DEFAULT": _server_defaults(info, getattr(info.ports, server_type)),
        "pipeline:main": {"pipeline": f"healthcheck {server_type}-server"},
        f"app:{server_type}-server": app,
        "filter:healthcheck": {"use": "egg:swift#healthcheck"},
    }


def _tempauth_option(user: str) -> str:
    """ "account:name" -> tempauth's "user_account_name" option."""
    account, name = user.split(":")
    return f"user_{account}_{name}"


def _proxy_conf(info: ClusterInfo) -> Conf:
    slo = {"use": "egg:swift#slo", "rate_limit_under_size": "0"}  # tiny test segments at speed
    if info.max_manifest_segments is not None:
        slo["max_manifest_segments"] = str(info.max_manifest_segments)
    conf: Conf = {
        "DEFAULT": _server_defaults(info, info.ports.proxy),
        "pipeline:main": {"pipeline": PROXY_PIPELINE},
        "app:proxy-server": {
            "use": "egg:swift#proxy",
            "expose_info": "true",
            "allow_account_management": "true",
            "account_autocreate": "true",
            "object_chunk_size": str(CHUNK_SIZE),
            "client_chunk_size": str(CHUNK_SIZE),
        },
        "filter:tempauth": {
            "use": "egg:swift#tempauth",
            _tempauth_option(info.user): f"{info.key} .admin",
            _tempauth_option(info.user2): info.key2,
        },
        "filter:cache": {
            "use": "egg:swift#memcache",
            "memcache_servers": f"{LOOPBACK}:{info.ports.memcached}",
        },
        "filter:slo": slo,
    }
    for name in PROXY_PIPELINE.split():
        section = f"filter:{name}"
        if name != "proxy-server" and section not in conf:
            conf[section] = {"use": f"egg:swift#{name.replace('-', '_')}"}
    return conf
