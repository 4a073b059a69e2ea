"""One Swift "all in one" cluster on loopback: its ports, configs, rings and processes.

A cluster is a memcached plus one account, container, object and proxy server, each its own
process, with rings of one device and one replica. Every file lives under the cluster's directory
(absolute paths: Swift servers chdir to /). This module only describes and checks a cluster;
``cloud.py`` starts and stops the processes.

Two auth systems share the cluster's storage, each with its own proxy (see swift_conf.py):
- ``proxy-server`` with tempauth, which owns the accounts ``TEMPAUTH_<name>``: its users and keys
  are in the proxy config, xfer's XFER_REGIONS uses them;
- with Keystone, ``keystone-proxy-server`` with keystonemiddleware's ``authtoken`` and Swift's
  ``keystoneauth``, which own the accounts ``AUTH_<project id>``: the catalog's object-store
  endpoint, where Glance's multi-tenant store writes.
One proxy with both would ask Keystone to validate every tempauth token, on every request
(keystonemiddleware caches no failures): 18 ms per HEAD instead of a few, and a warning each.

    <cluster dir>/etc/      swift.conf, <server>.conf, <type>.ring.gz   (the cluster's swift_dir)
    <cluster dir>/srv/node/d1/                                           (the one device)
    <cluster dir>/log/<process>.log                                      (stdout+stderr, -v)
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from xfer.dev.devcloud import swift_conf
from xfer.dev.devcloud.loopback import (
    LOOPBACK,
    PROBE_TIMEOUT_S,
    DevcloudError,
    LaunchSpec,
    OneShot,
    http_request,
    write_conf,
)
from xfer.dev.devcloud.swift_conf import KEYSTONE_PREFIX, SERVER_TYPES, KeystoneAccess

SWIFT_MAIN = Path(__file__).with_name("swift_main.py")
_REGION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


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
    keystone_proxy: int = 0  # 0: no Keystone, no such proxy


@dataclass(frozen=True)
class ClusterInfo:
    """A running cluster, as its clients and the launcher see it."""

    region: str
    proxy_url: str
    auth_url: str  # tempauth v1
    user: str  # .admin of account TEMPAUTH_test
    key: str
    user2: str  # not .admin, of another account (TEMPAUTH_test2): denied everything until an ACL
    key2: str
    directory: Path
    ports: ClusterPorts
    max_file_size: int | None
    max_manifest_segments: int | None
    # The object-store endpoint in Keystone's catalog (a template: "$(project_id)s" is the
    # token's project); "" when the cluster does not use Keystone.
    keystone_storage_url: str = ""

    @property
    def swift_dir(self) -> Path:
        return self.directory / "etc"

    @property
    def devices_dir(self) -> Path:
        return self.directory / "srv" / "node"

    @property
    def log_dir(self) -> Path:
        return self.directory / "log"


def prepare_cluster(
    spec: ClusterSpec, directory: Path, ports: ClusterPorts, keystone: KeystoneAccess | None = None
) -> ClusterInfo:
    """Create the cluster's directories and config files; rings are built by ``ring_command``.
    With ``keystone``, the proxy also accepts Keystone tokens for the AUTH_ accounts."""
    proxy_url = f"http://{LOOPBACK}:{ports.proxy}"
    info = ClusterInfo(
        region=spec.region,
        proxy_url=proxy_url,
        auth_url=f"{proxy_url}/auth/v1.0",
        user="test:tester",
        key="testing",
        user2="test2:tester2",
        key2="testing2",
        directory=directory.resolve(),
        ports=ports,
        max_file_size=spec.max_file_size,
        max_manifest_segments=spec.max_manifest_segments,
        keystone_storage_url=keystone_storage_url(ports.keystone_proxy) if keystone else "",
    )
    for path in (info.swift_dir, info.devices_dir / "d1", info.log_dir):
        path.mkdir(parents=True, exist_ok=True)
    etc = info.swift_dir
    write_conf(etc / "swift.conf", swift_conf.swift_conf(info), secret=True)
    write_conf(etc / "proxy-server.conf", swift_conf.tempauth_proxy_conf(info), secret=True)
    if keystone is not None:
        conf = swift_conf.keystone_proxy_conf(info, keystone)
        write_conf(etc / "keystone-proxy-server.conf", conf, secret=True)
    for server_type in SERVER_TYPES:
        write_conf(etc / f"{server_type}-server.conf", swift_conf.backend_conf(info, server_type))
    return info


def keystone_storage_url(proxy_port: int) -> str:
    """The object-store endpoint for Keystone's catalog; Keystone fills in the token's project."""
    return f"http://{LOOPBACK}:{proxy_port}/v1/{KEYSTONE_PREFIX}$(project_id)s"


def ring_step(info: ClusterInfo, python: Path) -> OneShot:
    ports = info.ports
    argv = (
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
    )
    return OneShot(f"{info.region}/rings", argv, info.log_dir / "rings.log")


def launch_specs(info: ClusterInfo, python: Path) -> list[LaunchSpec]:
    """memcached first: the proxy's tempauth answers 503 until its memcached is up."""
    specs = [_memcached_launch(info)]
    servers = [(f"{kind}-server", f"{kind}-server") for kind in SERVER_TYPES]
    servers.append(("proxy-server", "proxy-server"))
    if info.keystone_storage_url:
        servers.append(("keystone-proxy-server", "proxy-server"))  # (its config, its kind)
    for name, server in servers:
        argv = (
            str(python),
            str(SWIFT_MAIN),
            "server",
            str(info.swift_dir),
            str(info.swift_dir / f"{name}.conf"),
            server,
        )
        specs.append(LaunchSpec(f"{info.region}/{name}", argv, info.log_dir / f"{name}.log"))
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


def keystone_auth_problem(info: ClusterInfo, token: str, project_id: str) -> str | None:
    """HEAD the project's account on the Keystone proxy: exercises keystonemiddleware (which
    validates the token with Keystone) and keystoneauth. None when it answers 2xx."""
    path = f"/v1/{KEYSTONE_PREFIX}{project_id}"
    status, _, _ = http_request(
        info.ports.keystone_proxy, "HEAD", path, {"X-Auth-Token": token}, timeout=PROBE_TIMEOUT_S
    )
    return None if status // 100 == 2 else f"HEAD {path} with a Keystone token answered {status}"


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
