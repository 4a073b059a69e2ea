"""`xfer check` and /readyz against the local cloud as deployed, and with each piece an operator
can get wrong broken on purpose: the service user's password, its `service` role, an
image-transfer endpoint, the listen port, the database's migrations."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from tests.conftest import database_url, keystone_settings, running_service, unique
from tests.keystone_users import admin_session, make_user
from tests.test_cloud_keystone_glance import keystone_of
from tests.test_observe import closed_port
from xfer.check import Outcome, Preflight, print_outcomes
from xfer.dev import devcloud
from xfer.settings import Settings

pytestmark = pytest.mark.integration
HOME = "RegionOne"


def deployed(settings: Settings, cloud: devcloud.CloudInfo, **changes: object) -> Settings:
    """An xfer serving HOME where the catalog says it listens."""
    port = int(cloud.xfer_urls[HOME].rsplit(":", 1)[1])
    return keystone_settings(settings, cloud, HOME, listen_host="127.0.0.1", listen_port=port,
                             **changes)


async def outcomes_of(settings: Settings) -> dict[str, Outcome]:
    return {outcome.name: outcome for outcome in await Preflight(settings, 10.0).run()}


def failed(outcomes: dict[str, Outcome]) -> dict[str, Outcome]:
    return {name: outcome for name, outcome in outcomes.items() if outcome.ok is False}


async def test_a_deployment_as_the_cloud_registers_it_passes_every_check(
        settings: Settings, cloud: devcloud.CloudInfo, capsys: pytest.CaptureFixture[str]
        ) -> None:
    outcomes = await outcomes_of(deployed(settings, cloud))
    assert failed(outcomes) == {} and all(o.ok for o in outcomes.values()), outcomes
    assert {"database", "keystone", "keystone service user", "keystone service role", "catalog",
            "swift RegionOne", "swift RegionTwo", "glance RegionOne", "glance RegionTwo",
            "swift RegionOne (XFER_REGIONS)", "swift RegionTwo (XFER_REGIONS)"} <= set(outcomes)
    assert print_outcomes(list(outcomes.values()), sys.stdout) == 0
    assert "every check passed" in capsys.readouterr().out


async def test_a_wrong_password_is_named_and_what_needs_the_token_not_checked(
        settings: Settings, cloud: devcloud.CloudInfo, capsys: pytest.CaptureFixture[str]
        ) -> None:
    outcomes = await outcomes_of(deployed(settings, cloud, keystone_password="wrong"))
    assert set(failed(outcomes)) == {"keystone service user"}
    refused = outcomes["keystone service user"]
    assert "refused xfer's service user 'xfer'" in refused.found and "401" in refused.found
    assert "keystone_password" in refused.fix
    assert outcomes["catalog"].ok is None
    assert print_outcomes(list(outcomes.values()), sys.stdout) == 1
    printed = capsys.readouterr().out
    assert "FAIL  keystone service user" in printed and "fix: check keystone_user" in printed


async def test_a_service_user_without_the_service_role_is_told_the_command_that_grants_it(
        settings: Settings, cloud: devcloud.CloudInfo) -> None:
    name, password = make_user(cloud, "service", "member")
    outcomes = await outcomes_of(deployed(settings, cloud, keystone_user=name,
                                          keystone_password=password))
    assert set(failed(outcomes)) == {"keystone service role"}
    assert "not 'service'" in outcomes["keystone service role"].found
    assert outcomes["keystone service role"].fix == (
        f"openstack role add --user {name} --project service service")


async def test_a_listen_port_the_catalog_does_not_name_fails_the_catalog_check(
        settings: Settings, cloud: devcloud.CloudInfo) -> None:
    right = deployed(settings, cloud)
    outcomes = await outcomes_of(right.with_overrides(listen_port=right.listen_port + 1))
    assert set(failed(outcomes)) == {"catalog"}
    assert (f"{cloud.xfer_urls[HOME]} has port {right.listen_port}; this xfer listens on "
            f"{right.listen_port + 1}") in outcomes["catalog"].found
    # nor does the front lead there: not set up, which is no failure
    assert outcomes["front"].ok is None and "not set up" in outcomes["front"].found
    # behind a proxy at the catalog's URL, listening elsewhere: public_url names the endpoint
    proxied = await outcomes_of(right.with_overrides(listen_port=right.listen_port + 1,
                                                     public_url=cloud.xfer_urls[HOME] + "/"))
    assert failed(proxied) == {} and proxied["front"].ok, proxied
    astray = await outcomes_of(right.with_overrides(public_url="https://xfer.example.org"))
    assert set(failed(astray)) == {"catalog"}
    assert "is not this xfer's public_url https://xfer.example.org" in astray["catalog"].found
    assert "XFER_PUBLIC_URL" in astray["catalog"].fix
    wrong_host = await outcomes_of(right.with_overrides(listen_host="127.0.0.2"))
    assert "does not lead to 127.0.0.2" in wrong_host["catalog"].found
    elsewhere = await outcomes_of(keystone_settings(settings, cloud, "RegionThree"))
    assert "home_region 'RegionThree' holds no images" in elsewhere["catalog"].found


@contextlib.contextmanager
def endpoint_removed(cloud: devcloud.CloudInfo, service_type: str, region: str) -> Iterator[str]:
    """The public endpoint of `service_type` in `region` deleted, and made again afterwards
    (the session's other tests read the same catalog)."""
    admin, url = admin_session(cloud), keystone_of(cloud).auth_url
    service = admin.get(f"{url}/services", params={"type": service_type}).json()["services"][0]
    endpoint, = admin.get(f"{url}/endpoints", params={
        "service_id": service["id"], "interface": "public", "region_id": region}
        ).json()["endpoints"]
    assert admin.delete(f"{url}/endpoints/{endpoint['id']}").status_code == 204
    try:
        yield endpoint["url"]
    finally:
        made = admin.post(f"{url}/endpoints", json={"endpoint": {
            "service_id": service["id"], "interface": "public", "region_id": region,
            "url": endpoint["url"]}})
        assert made.status_code == 201, made.text
        admin.session.close()


async def test_a_front_for_a_region_without_images_is_named_with_the_setting_to_change(
        settings: Settings, cloud: devcloud.CloudInfo) -> None:
    outcomes = await outcomes_of(deployed(settings, cloud, front_region=f"{HOME}-via-xfer"))
    assert set(failed(outcomes)) == {"front"}
    assert f"{HOME}-via-xfer lead(s) to this xfer, which fronts '{HOME}-via-xfer'" in outcomes[
        "front"].found
    assert "XFER_FRONT_REGION" in outcomes["front"].fix


async def test_a_region_without_an_xfer_endpoint_is_named_with_the_command_to_add_it(
        settings: Settings, cloud: devcloud.CloudInfo) -> None:
    with endpoint_removed(cloud, "image-transfer", "RegionTwo"):
        outcomes = await outcomes_of(deployed(settings, cloud))
    assert set(failed(outcomes)) == {"catalog"}
    assert outcomes["catalog"].found == "no public image-transfer endpoint in RegionTwo"
    assert ("openstack endpoint create --region RegionTwo image-transfer public http://HOST:PORT"
            in outcomes["catalog"].fix)


@contextlib.asynccontextmanager
async def empty_database(cloud: devcloud.CloudInfo) -> AsyncIterator[str]:
    name = unique("xfer_unmigrated").replace("-", "_")
    admin = await asyncpg.connect(database_url(cloud.database_url, "postgres"))
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield database_url(cloud.database_url, name)
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def test_a_database_without_the_migrations_and_one_not_there_are_named(
        settings: Settings, cloud: devcloud.CloudInfo) -> None:
    async with empty_database(cloud) as url:
        outcomes = await outcomes_of(deployed(settings, cloud, database_url=url))
    assert set(failed(outcomes)) == {"database"}
    assert outcomes["database"].found.startswith("reachable, but migrations not applied: "
                                                 "0001_jobs.sql, 0002_")
    assert "xfer migrate" in outcomes["database"].fix
    gone = database_url(cloud.database_url, "xfer_no_such_database")
    outcomes = await outcomes_of(deployed(settings, cloud, database_url=gone))
    assert "xfer_no_such_database" in outcomes["database"].found
    assert "does not exist" in outcomes["database"].found


def test_the_command_reads_a_file_and_the_environment_and_exits_by_the_outcome(
        settings: Settings, cloud: devcloud.CloudInfo, tmp_path: Path) -> None:
    config = tmp_path / "xfer.conf"
    port = cloud.xfer_urls[HOME].rsplit(":", 1)[1]
    config.write_text(f"[DEFAULT]\ndatabase_url = {settings.database_url}\n"
                      f"listen_port = {port}\nhome_region = {HOME}\n")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("XFER_")}
    environ |= {k: v for k, v in cloud.serving_environ(HOME).items()
                if k not in ("XFER_DATABASE_URL", "XFER_LISTEN_PORT", "XFER_HOME_REGION")}
    command = [sys.executable, "-m", "xfer.cli", "check", "--config-file", str(config)]
    good = subprocess.run(command, env=environ, capture_output=True, text=True, timeout=120)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "ok    catalog: image-transfer in RegionOne, RegionTwo" in good.stdout
    assert "ok    keystone trusts: trusts enabled; " in good.stdout
    assert f"ok    front: {HOME}-via-xfer: this xfer, serving {HOME}'s images" in good.stdout
    bad = subprocess.run(command, env=environ | {"XFER_KEYSTONE_PASSWORD": "wrong"},
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "FAIL  keystone service user" in bad.stdout


async def ready(settings: Settings) -> tuple[int, dict]:  # type: ignore[type-arg]
    async with running_service(settings) as service, aiohttp.ClientSession() as http, \
            http.get(f"{service.url}/readyz") as response:
        return response.status, await response.json()


async def test_readyz_checks_xfers_own_keystone_user_and_says_when_it_is_its_configuration(
        settings: Settings, cloud: devcloud.CloudInfo) -> None:
    status, body = await ready(keystone_settings(settings, cloud, HOME))
    assert (status, body["checks"]["keystone"]["ok"]) == (200, True)

    status, body = await ready(keystone_settings(settings, cloud, HOME,
                                                 keystone_password="wrong"))
    assert status == 503 and body["error"]["code"] == "not_ready"
    assert body["error"]["message"].startswith("not ready: keystone: xfer's own configuration: ")
    assert "refused xfer's service user 'xfer'" in body["checks"]["keystone"]["error"]
    assert body["checks"]["database"]["ok"]

    name, password = make_user(cloud, "service", "member")
    status, body = await ready(keystone_settings(settings, cloud, HOME, keystone_user=name,
                                                 keystone_password=password))
    assert status == 503
    assert "xfer's own configuration" in body["checks"]["keystone"]["error"]
    assert f"openstack role add --user {name}" in body["checks"]["keystone"]["error"]

    down = f"http://127.0.0.1:{closed_port()}/v3"
    status, body = await ready(keystone_settings(settings, cloud, HOME, keystone_url=down))
    assert status == 503 and "keystone: " in body["error"]["message"]
    assert "configuration" not in body["checks"]["keystone"]["error"]
    assert "failed: ClientConnectorError" in body["checks"]["keystone"]["error"]
