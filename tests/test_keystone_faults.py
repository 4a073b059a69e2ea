"""Keystone seen from xfer (issue 16, section 5): a pooled connection Keystone closed costs a
request nothing, and Keystone refusing xfer's own credentials is reported as that, not as
Keystone being away."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

import pytest

from tests.conftest import keystone_settings, running_service
from tests.keepalive_proxy import KeepAliveProxy, Reset
from tests.keystone_users import live_trusts, make_user, new_user
from tests.test_cloud_keystone_glance import keystone_of, upload
from tests.test_image_copy import SOURCE, TARGET, call, wait_job
from tests.test_trusts import post_copy, settled_trusts
from xfer.dev import devcloud
from xfer.settings import Settings

pytestmark = pytest.mark.integration


def through(proxy: KeepAliveProxy, settings: Settings) -> Settings:
    return settings.with_overrides(keystone_url=f"{proxy.url}/v3")


def keystone_address(cloud: devcloud.CloudInfo) -> tuple[str, int]:
    parts = urlsplit(keystone_of(cloud).auth_url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


@pytest.fixture
def image_settings(settings: Settings, cloud: devcloud.CloudInfo) -> Settings:
    return keystone_settings(settings, cloud, TARGET, duty_poll_seconds=1.0)


@pytest.mark.parametrize("when", ["before", "after"])
async def test_a_trust_post_on_a_connection_keystone_closed_makes_one_trust(
        image_settings: Settings, cloud: devcloud.CloudInfo, when: str) -> None:
    """before: the POST never reached Keystone and is sent again; after: Keystone made the
    trust and its answer was lost, so the POST sent again gets 409 and the trust is found."""
    user = new_user(cloud)
    source = upload(user, SOURCE, os.urandom(100_000))
    reset = Reset(when, "POST", r"/OS-TRUST/trusts$")  # type: ignore[arg-type]
    async with KeepAliveProxy(*keystone_address(cloud), [reset]) as proxy:
        async with running_service(through(proxy, image_settings)) as xfer:
            await call(xfer, "GET", "/v1/jobs", user)  # xfer's pool holds a connection now
            status, job = await post_copy(xfer, user, source["id"])
            assert status == 201, job
            assert reset.fired == 1
            trust_posts = [target for method, target in proxy.forwarded
                           if method == "POST" and target.endswith("/OS-TRUST/trusts")]
            assert len(trust_posts) == (1 if when == "before" else 2)
            assert len(live_trusts(cloud, user)) == 1  # never two
            ended = await wait_job(xfer, user, job["id"])
            assert ended["state"] == "succeeded", ended["error"]
            assert await settled_trusts(cloud, user, 0) == []


async def test_token_posts_on_connections_keystone_closed_are_sent_again(
        image_settings: Settings, cloud: devcloud.CloudInfo) -> None:
    user = new_user(cloud)
    source = upload(user, SOURCE, os.urandom(100_000))
    reset = Reset("before", "POST", r"/auth/tokens$", times=3)
    async with KeepAliveProxy(*keystone_address(cloud), [reset]) as proxy:
        async with running_service(through(proxy, image_settings)) as xfer:
            await call(xfer, "GET", "/v1/jobs", user)
            status, job = await post_copy(xfer, user, source["id"])
            assert status == 201, job
            ended = await wait_job(xfer, user, job["id"])
    assert ended["state"] == "succeeded", ended["error"]
    assert reset.fired >= 1  # the job's trust tokens came on pooled connections


@pytest.mark.parametrize("broken", ["password", "role"])
async def test_keystone_refusing_xfers_own_credentials_is_the_operators_to_fix(
        settings: Settings, cloud: devcloud.CloudInfo, broken: str,
        caplog: pytest.LogCaptureFixture) -> None:
    user = new_user(cloud)
    if broken == "password":
        misconfigured = keystone_settings(settings, cloud, TARGET,
                                          keystone_password="not-the-password")
    else:  # a user without the `service` role may not validate tokens
        name, password = make_user(cloud, "service", "member")
        misconfigured = keystone_settings(settings, cloud, TARGET, keystone_user=name,
                                          keystone_password=password, keystone_project="service")
    async with running_service(misconfigured) as xfer:
        for method, path in (("GET", "/v1/jobs"), ("GET", "/v1/regions"),
                             ("POST", f"/v1/images/{'0' * 8}-0000-4000-8000-{'0' * 12}/copies")):
            status, body = await call(xfer, method, path, user, {"source_region": SOURCE})
            assert status == 503, body
            assert body["error"]["code"] == "service_misconfigured", body
            assert "operator" in body["error"]["message"]
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert "XFER_KEYSTONE_PASSWORD" in logged and "service" in logged
    assert live_trusts(cloud, user) == []
