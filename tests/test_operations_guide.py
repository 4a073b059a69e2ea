"""docs/operations.md's deployment guide, run as written against the local cloud as if it were
someone else's: its `openstack` commands with the real CLI, its database step, its
configuration file, then `xfer migrate`, `xfer check` and `xfer serve` as its steps say.

The guide's example names become this run's own (fresh regions standing for the operator's,
with object-store and image endpoints at the local cloud's Swift and Glance, a fresh service
user, free ports), so the session's other tests keep their catalog; everything made is
deleted afterwards. Not run: the Glance `allowed_ports` change (the cloud's Glance already
allows its ports) and the systemd step (tests/test_deploy.py verifies the units)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from tests.conftest import as_postgres, unique
from tests.keystone_users import admin_session
from tests.test_cloud_keystone_glance import keystone_of
from tests.test_observe import closed_port
from xfer.dev import devcloud

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Deploying next to an existing cloud"
OPENSTACK = ROOT / ".cloud-venv" / "bin" / "openstack"


def guide() -> str:
    text = (ROOT / "docs" / "operations.md").read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start:end if end != -1 else None]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", guide(), re.DOTALL)


class Names:
    """The guide's example names, and this run's instead."""

    def __init__(self) -> None:
        tag = self.tag = unique("ops").replace("-", "")
        self.regions = {"RegionOne": f"{tag}One", "RegionTwo": f"{tag}Two"}
        self.user, self.password = f"xfer{tag}", secrets.token_urlsafe(16)
        self.database = f"xfer_{tag}"
        self.ports = {"xfer-r1.example.org:8660": closed_port(),
                      "xfer-r2.example.org:8660": closed_port()}

    @property
    def home(self) -> str:
        return self.regions["RegionOne"]

    @property
    def home_port(self) -> int:
        return self.ports["xfer-r1.example.org:8660"]

    def here(self, text: str) -> str:
        for example, region in self.regions.items():
            text = text.replace(example, region)
        for example, port in self.ports.items():
            text = text.replace(example, f"127.0.0.1:{port}")
        text = text.replace("--password-prompt", f"--password {self.password}")
        for service in ("xfer-glance-front", "xfer"):  # the local cloud has its own of each
            text = re.sub(rf"(--name|public) {service}(?= )", rf"\1 {service}{self.tag}", text)
            text = re.sub(rf" {service} public ", f" {service}{self.tag} public ", text)
        text = re.sub(r"(openstack user create .*) xfer$", rf"\1 {self.user}", text, flags=re.M)
        return text.replace("--user xfer ", f"--user {self.user} ")


def openstack(cloud: devcloud.CloudInfo, command: str) -> None:
    words = shlex.split(command)
    assert words[0] == "openstack", command
    done = subprocess.run([str(OPENSTACK), *words[1:]], capture_output=True, text=True,
                          timeout=120, env=os.environ | cloud.openstack_environ("admin"))
    assert done.returncode == 0, f"{command}: {done.stderr}"


@contextlib.contextmanager
def existing_cloud(cloud: devcloud.CloudInfo, names: Names) -> Iterator[None]:
    """The operator's regions before xfer: each with the object-store and image endpoints of
    one of the local cloud's regions; afterwards, everything in them and the guide's user and
    services deleted."""
    admin, url = admin_session(cloud), keystone_of(cloud).auth_url
    services_before = {s["id"] for s in admin.get(f"{url}/services").json()["services"]}
    endpoints = admin.get(f"{url}/endpoints", params={"interface": "public"}).json()["endpoints"]
    storage = {s["id"] for s in admin.get(f"{url}/services").json()["services"]
               if s["type"] in ("object-store", "image")}
    for example, region in names.regions.items():
        assert admin.post(f"{url}/regions", json={"region": {"id": region}}).status_code == 201
        for endpoint in endpoints:
            if endpoint["region_id"] == example and endpoint["service_id"] in storage:
                made = admin.post(f"{url}/endpoints", json={"endpoint": {
                    "service_id": endpoint["service_id"], "interface": "public",
                    "region_id": region, "url": endpoint["url"]}})
                assert made.status_code == 201, made.text
    try:
        yield
    finally:
        ours = {*names.regions.values(), *(f"{r}-via-xfer" for r in names.regions.values())}
        for endpoint in admin.get(f"{url}/endpoints").json()["endpoints"]:
            if endpoint["region_id"] in ours:
                admin.delete(f"{url}/endpoints/{endpoint['id']}", raise_exc=False)
        for service in admin.get(f"{url}/services").json()["services"]:
            if service["id"] not in services_before:
                admin.delete(f"{url}/services/{service['id']}", raise_exc=False)
        for region in ours:
            admin.delete(f"{url}/regions/{region}", raise_exc=False)
        for user in admin.get(f"{url}/users", params={"name": names.user}).json()["users"]:
            admin.delete(f"{url}/users/{user['id']}", raise_exc=False)
        admin.session.close()


async def create_database(cloud: devcloud.CloudInfo, names: Names, block: str) -> str:
    """The guide's database block, which must be exactly these two commands, done in SQL on
    the local cloud's PostgreSQL (it has no `postgres` system user to sudo to)."""
    assert block.splitlines() == ["sudo -u postgres createuser --pwprompt xfer",
                                  "sudo -u postgres createdb --owner xfer xfer"]
    await as_postgres(cloud.database_url,
                      f"CREATE ROLE {names.database} LOGIN PASSWORD '{names.password}'",
                      f"CREATE DATABASE {names.database} OWNER {names.database}")
    where = urlsplit(cloud.database_url)  # the server's address, maybe a socket in the query
    server = where.netloc.rpartition("@")[2]
    return urlunsplit((where.scheme, f"{names.database}:{names.password}@{server}",
                       f"/{names.database}", where.query, ""))


async def drop_database(cloud: devcloud.CloudInfo, names: Names) -> None:
    await as_postgres(cloud.database_url,
                      f"DROP DATABASE IF EXISTS {names.database} WITH (FORCE)",
                      f"DROP ROLE IF EXISTS {names.database}")


def xfer(*arguments: str, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xfer.cli", *arguments], capture_output=True,
                          text=True, timeout=180, env=environ)


def test_the_deployment_guide_run_as_written_deploys_an_xfer_that_passes_its_checks(
        cloud: devcloud.CloudInfo, tmp_path: Path) -> None:
    names = Names()
    shell, ini = blocks("sh"), blocks("ini")
    keystone_steps = [names.here(block) for block in shell[:3]]
    assert all(line.startswith("openstack ") for step in keystone_steps
               for line in step.splitlines())
    with existing_cloud(cloud, names):
        for step in keystone_steps:
            for command in step.splitlines():
                openstack(cloud, command)
        database = asyncio.run(create_database(cloud, names, shell[3]))
        try:
            deploy_and_check(cloud, names, ini, database, tmp_path)
        finally:
            asyncio.run(drop_database(cloud, names))


def deploy_and_check(cloud: devcloud.CloudInfo, names: Names, ini: list[str],
                           database: str, tmp_path: Path) -> None:
    config_block, = (block for block in ini if block.startswith("[DEFAULT]"))
    config = names.here(config_block)
    config = re.sub(r"^keystone_url = .*$", f"keystone_url = {keystone_of(cloud).auth_url}",
                    config, flags=re.M)
    config = config.replace("keystone_user = xfer", f"keystone_user = {names.user}")
    config = config.replace("listen_port = 8660", f"listen_port = {names.home_port}")
    path = tmp_path / "xfer.conf"
    path.write_text(config)
    # the environment file's two secrets; nothing else of this process's XFER_* settings
    environ = {k: v for k, v in os.environ.items() if not k.startswith("XFER_")} | {
        "XFER_DATABASE_URL": database, "XFER_KEYSTONE_PASSWORD": names.password}
    migrated = xfer("migrate", "--config-file", str(path), environ=environ)
    assert migrated.returncode == 0, migrated.stderr
    checked = xfer("check", "--config-file", str(path), environ=environ)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    catalog, = (line for line in checked.stdout.splitlines() if " catalog: " in line)
    assert catalog.startswith("ok ") and names.regions["RegionTwo"] in catalog
    assert catalog.endswith(f"; {names.home}'s is this xfer")
    with subprocess.Popen([sys.executable, "-m", "xfer.cli", "serve", "--config-file",
                           str(path)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True, env=environ) as serving:
        try:
            assert serving.stdout is not None
            listening = json.loads(serving.stdout.readline())["listening"]
            assert listening == f"http://0.0.0.0:{names.home_port}"
            ready = requests.get(f"http://127.0.0.1:{names.home_port}/readyz", timeout=30)
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"]["keystone"]["ok"]
        finally:
            serving.send_signal(signal.SIGTERM)  # the guide's graceful stop
            assert serving.wait(timeout=90) == 0
