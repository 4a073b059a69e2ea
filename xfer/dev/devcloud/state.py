"""What a local cloud is (``CloudInfo``: its services, users and processes) and its state file,
``<state_dir>/devcloud.json``, which holds it between commands.

The state file holds passwords (Keystone users, tempauth keys): it is created mode 0600 and
replaced atomically, so a reader never sees half of it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xfer.dev.devcloud.glance_server import GlanceInfo
from xfer.dev.devcloud.keystone_server import DOMAIN, KeystoneInfo, OpenStackUser
from xfer.dev.devcloud.loopback import SECRET_FILE_MODE, DevcloudError
from xfer.dev.devcloud.postgres import PostgresInfo
from xfer.dev.devcloud.processes import ProcessRecord
from xfer.dev.devcloud.swift_cluster import ClusterInfo, ClusterPorts
from xfer.dev.devcloud.tls import TlsInfo
from xfer.settings import RegionConfig, regions_variable

STATE_FILE = "devcloud.json"


@dataclass(frozen=True)
class CloudInfo:
    state_dir: Path
    clusters: dict[str, ClusterInfo]  # by region name
    database_url: str  # "" when started with database=False and no XFER_DATABASE_URL
    processes: tuple[ProcessRecord, ...] = field(default=())
    keystone: KeystoneInfo | None = None  # None when started with openstack=False
    glances: dict[str, GlanceInfo] = field(default_factory=dict)  # by region name
    xfer_urls: dict[str, str] = field(default_factory=dict)  # the catalog's xfer, by region
    # The embedded PostgreSQL: xfer's database (unless database=False or XFER_DATABASE_URL) and
    # Keystone's and Glance's. None when it runs neither.
    postgres: PostgresInfo | None = None
    tls: TlsInfo | None = None  # the https endpoints (tls.py), with Keystone

    def environ(self) -> dict[str, str]:
        """XFER_* variables for an xfer process using this cloud."""
        regions = (RegionConfig(region, c.auth_url, c.user, c.key)
                   for region, c in self.clusters.items())
        variables = {"XFER_REGIONS": regions_variable(regions)}
        if self.database_url:
            variables["XFER_DATABASE_URL"] = self.database_url
        return variables

    def serving_environ(self, region: str) -> dict[str, str]:
        """XFER_* variables for an xfer serving `region` with Keystone: its catalog port, its
        service user, the image copy API."""
        if self.keystone is None:
            return self.environ()
        service = self.keystone.user("xfer")
        return self.environ() | {
            "XFER_KEYSTONE_URL": self.keystone.auth_url,
            "XFER_KEYSTONE_USER": service.name,
            "XFER_KEYSTONE_PASSWORD": service.password,
            "XFER_KEYSTONE_PROJECT": service.project,
            "XFER_HOME_REGION": region,
            "XFER_LISTEN_PORT": self.xfer_urls[region].rsplit(":", 1)[1],
        }

    def openstack_environ(self, user: str = "alice", region: str = "") -> dict[str, str]:
        """OS_* variables (openstack CLI, keystoneauth1 loaders) for one Keystone user."""
        if self.keystone is None:
            return {}
        account = self.keystone.user(user)
        return {
            "OS_AUTH_URL": self.keystone.auth_url,
            "OS_AUTH_TYPE": "password",
            "OS_IDENTITY_API_VERSION": "3",
            "OS_USERNAME": account.name,
            "OS_PASSWORD": account.password,
            "OS_PROJECT_NAME": account.project,
            "OS_USER_DOMAIN_NAME": DOMAIN,
            "OS_PROJECT_DOMAIN_NAME": DOMAIN,
            "OS_REGION_NAME": region or next(iter(self.clusters)),
            "OS_INTERFACE": "public",
        }

    def shell_exports(self, user: str = "alice", region: str = "", serve: str = "") -> str:
        """``export NAME='value'`` lines for ``eval "$(xfer devcloud env)"``; `serve`: the
        XFER_* lines of an xfer serving that region with Keystone."""
        xfer = self.serving_environ(serve) if serve else self.environ()
        variables = xfer | self.openstack_environ(user, region)
        return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in variables.items())


@contextlib.contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """Serialise what changes the state file (up, down, a restart) across processes."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with (state_dir / ".lock").open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield


def write_state(cloud: CloudInfo, *, ready: bool) -> None:
    document = {"ready": ready, **asdict(cloud)}
    temporary = cloud.state_dir / f"{STATE_FILE}.tmp"
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
    with os.fdopen(descriptor, "w") as state_file:
        state_file.write(json.dumps(document, indent=2, default=str) + "\n")
    os.replace(temporary, cloud.state_dir / STATE_FILE)


def remove_state(state_dir: Path) -> None:
    (state_dir / STATE_FILE).unlink()


def read_state(state_dir: Path) -> tuple[CloudInfo, bool] | None:
    """The recorded cloud and whether its ``up`` finished; None when there is no state file."""
    try:
        document: dict[str, Any] = json.loads((state_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise DevcloudError(f"unreadable state file in {state_dir}: {exc}") from exc
    return _cloud_from(document), bool(document["ready"])


def _cloud_from(document: dict[str, Any]) -> CloudInfo:
    clusters = {
        region: ClusterInfo(**{**c, "directory": Path(c["directory"]),
                               "ports": ClusterPorts(**c["ports"])})
        for region, c in document["clusters"].items()
    }
    processes = tuple(ProcessRecord(**{**p, "log_path": Path(p["log_path"])})
                      for p in document["processes"])
    keystone = None
    if document.get("keystone"):
        k = document["keystone"]
        users = {name: OpenStackUser(**user) for name, user in k["users"].items()}
        keystone = KeystoneInfo(k["port"], k["auth_url"], Path(k["directory"]), users)
    glances = {region: GlanceInfo(**{**g, "directory": Path(g["directory"])})
               for region, g in document.get("glances", {}).items()}
    server = document.get("postgres")
    postgres = None if not server else PostgresInfo(Path(server["pgdata"]),
                                                    Path(server["socket_dir"]))
    tls = None
    if document.get("tls"):
        t = document["tls"]
        tls = TlsInfo(Path(t["ca_file"]), Path(t["cert_file"]), Path(t["key_file"]),
                      t["keystone_port"], {r: tuple(p) for r, p in t["region_ports"].items()},
                      tuple(tuple(pair) for pair in t["relays"]))
    return CloudInfo(Path(document["state_dir"]), clusters, document["database_url"], processes,
                     keystone, glances, document.get("xfer_urls", {}), postgres, tls)
