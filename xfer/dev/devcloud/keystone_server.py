"""The local cloud's Keystone: one identity service for every region, its users and its catalog.

Keystone runs under gunicorn (``openstack_main.py serve keystone``) on its own database
(``keystone``) of the cloud's PostgreSQL (postgres.py), with fernet tokens, an in-memory cache and
cheap password hashing (4 bcrypt rounds: 4-7 ms a request instead of 100-350 ms). One process
(``openstack_main.py keystone-setup``) creates the schema and everything in ``seed.json``: what
``keystone-manage db_sync`` and ``bootstrap`` would do in two processes (1.5 s of imports each),
plus the regions, catalog, projects and users below.

Keystone's application needs its key repositories when it is imported, but not its database.
So this module writes the fernet keys itself (what ``fernet_setup`` and ``credential_setup``
would write) and the server starts at once, importing while the set-up runs; nothing asks it
anything before the set-up has finished (its in-memory cache would keep what it saw).

    <keystone dir>/keystone.conf   the config (OS_KEYSTONE_CONFIG_DIR is this directory)
    <keystone dir>/seed.json       users with their passwords, catalog (mode 0600)
    <keystone dir>/keys/{fernet-tokens,fernet-receipts,credential}/   (mode 0700)
    <keystone dir>/keystone.log    gunicorn's and Keystone's stderr
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xfer.dev.devcloud.loopback import (
    LOOPBACK,
    PROBE_TIMEOUT_S,
    Conf,
    LaunchSpec,
    OneShot,
    gunicorn_argv,
    json_request,
    write_conf,
    write_secret_json,
    write_secret_text,
)
from xfer.dev.devcloud.postgres import PostgresInfo, oslo_db_section

OPENSTACK_MAIN = Path(__file__).with_name("openstack_main.py")
DOMAIN = "Default"  # every user and project lives in the default domain (id "default")
SERVICE_PROJECT = "service"
XFER_SERVICE_TYPE = "image-transfer"  # xfer's own service type in the catalog
# The region of xfer's Glance-compatible read endpoint fronting a region: an `image` endpoint
# only, so that a stock Glance elsewhere imports through xfer with glance-download.
VIA_XFER_SUFFIX = "-via-xfer"
KEY_REPOSITORIES = ("fernet-tokens", "fernet-receipts", "credential")
DATABASE = "keystone"  # its database in the cloud's PostgreSQL


def via_xfer(region: str) -> str:
    """The catalog region in which xfer fronts `region`'s images (RegionOne-via-xfer)."""
    return f"{region}{VIA_XFER_SUFFIX}"


@dataclass(frozen=True)
class OpenStackUser:
    name: str
    password: str = field(repr=False)
    project: str  # the project it has ``role`` on, in the default domain
    role: str


# (user, project, role). "admin" is keystone-manage bootstrap's admin. The service users have the
# role "service": swift and glance for their keystonemiddleware, xfer for X-Service-Token.
USERS = (
    ("admin", "admin", "admin"),
    ("alice", "alpha", "member"),
    ("bob", "beta", "member"),
    ("carol", "alpha", "reader"),
    ("xfer", SERVICE_PROJECT, "service"),
    ("swift", SERVICE_PROJECT, "service"),
    ("glance", SERVICE_PROJECT, "service"),
)


@dataclass(frozen=True)
class RegionEndpoints:
    """What the catalog lists for one region besides identity."""

    object_store_url: str  # http://127.0.0.1:PORT/v1/AUTH_$(project_id)s
    image_url: str  # http://127.0.0.1:PORT
    xfer_url: str  # http://127.0.0.1:PORT, where an xfer serving this region listens


@dataclass(frozen=True)
class KeystoneInfo:
    port: int
    auth_url: str  # http://127.0.0.1:PORT/v3, the identity endpoint of every region
    directory: Path
    users: dict[str, OpenStackUser]  # by name

    @property
    def log_path(self) -> Path:
        return self.directory / "keystone.log"

    def user(self, name: str) -> OpenStackUser:
        return self.users[name]


@dataclass(frozen=True)
class IssuedToken:
    token: str = field(repr=False)
    project_id: str
    body: dict[str, Any]  # Keystone's reply: {"token": {"catalog": [...], "expires_at": ..., ...}}


def prepare_keystone(
    directory: Path, port: int, regions: Mapping[str, RegionEndpoints], server: PostgresInfo
) -> KeystoneInfo:
    """Config and seed files with fresh random passwords; nothing started yet. Its database,
    ``DATABASE`` on ``server``, is created by cloud.py."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    users = {
        name: OpenStackUser(name, secrets.token_urlsafe(18), project, role)
        for name, project, role in USERS
    }
    info = KeystoneInfo(port, f"http://{LOOPBACK}:{port}/v3", directory, users)
    for repository in KEY_REPOSITORIES:
        _write_key_repository(directory / "keys" / repository)
    write_conf(directory / "keystone.conf", _keystone_conf(directory, server))
    write_secret_json(directory / "seed.json", _seed(info, regions))
    return info


def setup_step(info: KeystoneInfo, python: Path) -> OneShot:
    argv = (str(python), "-P", str(OPENSTACK_MAIN), "keystone-setup",
            str(info.directory / "keystone.conf"), str(info.directory / "seed.json"))
    return OneShot("keystone-setup", argv, info.directory / "keystone-setup.log")


def launch_spec(info: KeystoneInfo, python: Path) -> LaunchSpec:
    argv = (str(python), "-P", str(OPENSTACK_MAIN), "serve", "keystone", str(info.directory),
            *gunicorn_argv(info.port, info.directory / "gunicorn.pid", timeout_s=60))
    return LaunchSpec("keystone", argv, info.log_path)


def issue_token(
    info: KeystoneInfo, user: OpenStackUser, *, timeout: float = PROBE_TIMEOUT_S
) -> IssuedToken | str:
    """A project-scoped token for ``user`` (password method), or why there is none."""
    document = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user.name, "domain": {"name": DOMAIN}, "password": user.password}}},
        "scope": {"project": {"name": user.project, "domain": {"name": DOMAIN}}},
    }}
    status, headers, body = json_request(
        info.port, "POST", "/v3/auth/tokens", document, timeout=timeout
    )
    token = headers.get("x-subject-token")
    if status != 201 or not token or not isinstance(body, dict):
        return f"Keystone answered {status} to a token request for {user.name}"
    return IssuedToken(token, body["token"]["project"]["id"], body)


def _write_key_repository(repository: Path) -> None:
    """A fernet key repository as keystone-manage fernet_setup leaves it: key 0 staged, key 1
    primary, each a urlsafe-base64 32-byte key (cryptography's Fernet.generate_key format)."""
    repository.mkdir(mode=0o700, parents=True)
    for index in (0, 1):
        key = base64.urlsafe_b64encode(os.urandom(32)).decode()
        write_secret_text(repository / str(index), key)


def _keystone_conf(directory: Path, server: PostgresInfo) -> Conf:
    keys = directory / "keys"
    return {
        "DEFAULT": {"use_stderr": "true", "debug": "false"},
        "database": oslo_db_section(server, DATABASE),
        "fernet_tokens": {"key_repository": str(keys / "fernet-tokens")},
        # Keystone reads receipt keys from /etc/keystone/fernet-keys unless told otherwise.
        "fernet_receipts": {"key_repository": str(keys / "fernet-receipts")},
        "credential": {"key_repository": str(keys / "credential")},
        "cache": {"enabled": "true", "backend": "dogpile.cache.memory"},
        # max_password_length: bcrypt's 72, or Keystone warns on every password it hashes.
        "identity": {"password_hash_rounds": "4", "max_password_length": "72"},
    }


def _seed(info: KeystoneInfo, regions: Mapping[str, RegionEndpoints]) -> dict[str, Any]:
    """What openstack_main.py keystone-setup creates. Every region lists its own identity
    endpoints (same URL): keystonemiddleware with region_name=RegionTwo finds none otherwise.
    Each region's xfer also fronts that region's images as the `image` service of a region of
    its own, `<region>-via-xfer` (its own service, so that the Glance of each region stays the
    only `glance`); Glance's glance-download needs every image endpoint to have a region."""
    services = [
        ("identity", "keystone", {region: info.auth_url for region in regions}),
        ("object-store", "swift", {r: e.object_store_url for r, e in regions.items()}),
        ("image", "glance", {r: e.image_url for r, e in regions.items()}),
        (XFER_SERVICE_TYPE, "xfer", {r: e.xfer_url for r, e in regions.items()}),
        ("image", "xfer-glance-front", {via_xfer(r): e.xfer_url for r, e in regions.items()}),
    ]
    return {
        "admin": {"name": "admin", "password": info.user("admin").password, "project": "admin"},
        "regions": [*regions, *(via_xfer(region) for region in regions)],
        "services": [{"type": kind, "name": name, "endpoints": urls}
                     for kind, name, urls in services],
        "users": [{"name": u.name, "password": u.password, "project": u.project, "role": u.role}
                  for u in info.users.values() if u.name != "admin"],
    }
