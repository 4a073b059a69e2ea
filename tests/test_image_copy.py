"""Issue 9's flow end to end against the real local cloud: a user asks the xfer of RegionTwo for a
copy of a RegionOne image; xfer acts through a Keystone trust, copies Swift to Swift, verifies,
registers the copy in RegionTwo's Glance and indexes it."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from keystoneauth1 import session as ksa_session
from multidict import CIMultiDict

from tests.conftest import MiB, Service, keystone_settings, running_service
from tests.test_cloud_keystone_glance import (
    image_api,
    object_store,
    replace_with_slo,
    share,
    upload,
    user_session,
)
from xfer.clients.openstack import OpenStackClients
from xfer.clients.swift import SwiftRegions
from xfer.clients.transport import http_session
from xfer.dev import devcloud
from xfer.engine.object_copy import Copier
from xfer.errors import CopyFailed
from xfer.images.flow import ImageCopier
from xfer.images.types import ImageCopyJob, ImageStep
from xfer.settings import Settings

pytestmark = pytest.mark.integration

SOURCE, TARGET = "RegionOne", "RegionTwo"


@pytest.fixture
def image_settings(settings: Settings, cloud: devcloud.CloudInfo) -> Settings:
    return keystone_settings(settings, cloud, TARGET)


@pytest.fixture
async def xfer(image_settings: Settings) -> AsyncIterator[Service]:
    async with running_service(image_settings) as running:
        yield running


@pytest.fixture(scope="module")
def sessions(cloud: devcloud.CloudInfo) -> Iterator[dict[str, ksa_session.Session]]:
    made = {name: user_session(cloud, name) for name in ("alice", "bob", "carol")}
    yield made
    for session in made.values():
        session.session.close()


def token(session: ksa_session.Session) -> dict[str, str]:
    return {"X-Auth-Token": session.get_token()}


async def call(service: Service, method: str, path: str, session: ksa_session.Session | None,
               body: Any = None) -> tuple[int, Any]:
    headers = token(session) if session is not None else {}
    async with service.http.request(method, f"{service.url}{path}", json=body,
                                    headers=headers) as response:
        return response.status, await response.json()


async def copy_image(service: Service, session: ksa_session.Session, image_id: str,
                     deadline: float = 120.0, **fields: Any) -> dict:
    status, job = await call(service, "POST", f"/v1/images/{image_id}/copies", session,
                             {"source_region": SOURCE, **fields})
    assert status == 201, job
    return await wait_job(service, session, job["id"], deadline)


async def wait_job(service: Service, session: ksa_session.Session, job_id: str,
                   deadline: float = 120.0) -> dict:
    async with asyncio.timeout(deadline):
        while True:
            status, job = await call(service, "GET", f"/v1/jobs/{job_id}", session)
            assert status == 200, job
            if job["state"] in ("succeeded", "failed", "cancelled"):
                return job
            await asyncio.sleep(0.2)


def glance_image(session: ksa_session.Session, region: str, image_id: str) -> dict:
    response = session.get(f"{image_api(session, region)}/v2/images/{image_id}", raise_exc=False)
    assert response.status_code == 200, response.text
    image: dict = response.json()
    return image


def no_image(session: ksa_session.Session, region: str, image_id: str) -> bool:
    response = session.get(f"{image_api(session, region)}/v2/images/{image_id}", raise_exc=False)
    return response.status_code == 404


def container_gone(session: ksa_session.Session, region: str, image_id: str) -> bool:
    url = f"{object_store(session, region)}/glance_{image_id}"
    response = session.get(url, params={"format": "json"}, raise_exc=False)
    return response.status_code == 404 or response.json() == []


PROPERTIES = {"os_distro": "cirros", "hw_disk_bus": "scsi", "architecture": "x86_64",
              "description": "ünïcode ✓ 日本語", "custom_key": "custom value",
              "os_version": "0.6"}


def source_image(session: ksa_session.Session, data: bytes, *, chunked: bool = True) -> dict:
    """An image uploaded through RegionOne's Glance, with properties, tags, min_ram/min_disk."""
    image = upload(session, SOURCE, data, chunked=chunked)
    patch = [{"op": "add", "path": f"/{key}", "value": value} for key, value in
             {**PROPERTIES, "min_ram": 512, "min_disk": 2,
              "tags": ["tag-a", "tág-b"]}.items()]
    response = session.patch(
        f"{image_api(session, SOURCE)}/v2/images/{image['id']}", json=patch,
        headers={"Content-Type": "application/openstack-images-v2.1-json-patch"})
    assert response.status_code == 200, response.text
    updated: dict = response.json()
    return updated


async def test_a_member_copies_a_private_dlo_image_with_its_properties(
        xfer: Service, sessions: dict[str, ksa_session.Session]) -> None:
    alice = sessions["alice"]
    data = os.urandom(200 * MiB + 123)  # "a few hundred MB", as a user would copy
    source = source_image(alice, data)  # uploaded without Content-Length: a DLO in Swift

    job = await copy_image(xfer, alice, source["id"], name="copied")

    assert job["state"] == "succeeded", job["error"]
    copy_id = job["image"]["target_image_id"]
    assert copy_id and copy_id != source["id"]
    copy = glance_image(alice, TARGET, copy_id)
    assert copy["status"] == "active"
    assert (copy["checksum"], copy["os_hash_value"]) == (source["checksum"],
                                                        source["os_hash_value"])
    assert copy["checksum"] == hashlib.md5(data).hexdigest()
    assert copy["name"] == "copied"
    assert (copy["min_ram"], copy["min_disk"]) == (512, 2)
    assert sorted(copy["tags"]) == sorted(source["tags"])
    assert copy["visibility"] == "private" and copy["owner"] == source["owner"]
    for key, value in PROPERTIES.items():
        assert copy[key] == value, key
    assert (copy["source_region"], copy["source_image_id"]) == (SOURCE, source["id"])
    # its data, segments included, in its own container of alice's RegionTwo account
    assert copy["direct_url"].startswith(
        f"swift+{object_store(alice, TARGET)}/glance_{copy_id}/")
    downloaded = alice.get(f"{image_api(alice, TARGET)}/v2/images/{copy_id}/file")
    assert hashlib.md5(downloaded.content).hexdigest() == source["checksum"]
    assert job["verification"] == "end_to_end" and job["md5"] == source["checksum"]


async def test_without_a_valid_token_every_call_is_401(
        xfer: Service, sessions: dict[str, ksa_session.Session]) -> None:
    valid = sessions["alice"].get_token()
    assert isinstance(valid, str)
    for headers in (CIMultiDict(), CIMultiDict({"X-Auth-Token": "not-a-token"}),
                    CIMultiDict({"X-Auth-Token": "gAAAA" + "x" * 180}),
                    CIMultiDict({"X-Auth-Token": valid + "é"}),
                    CIMultiDict({"X-Auth-Token": "   "}),
                    CIMultiDict([("X-Auth-Token", valid), ("X-Auth-Token", "not-a-token")]),
                    CIMultiDict([("X-Auth-Token", valid), ("X-Auth-Token", valid)])):
        for method, path in (("GET", "/v1/jobs"), ("GET", "/v1/regions"),
                             ("POST", f"/v1/images/{uuid.uuid4()}/copies"),
                             ("GET", f"/v1/jobs/{uuid.uuid4()}"),
                             ("GET", f"/v2/images/{uuid.uuid4()}"),
                             ("GET", f"/v2/images/{uuid.uuid4()}/file")):
            async with xfer.http.request(method, f"{xfer.url}{path}", headers=headers,
                                         json={"source_region": SOURCE}) as response:
                body = await response.json()
                assert response.status == 401, (method, path, body)
                assert body["error"]["code"] == "unauthorized"
                assert "Keystone" in response.headers["WWW-Authenticate"]
    async with xfer.http.get(f"{xfer.url}/healthz") as response:
        assert response.status == 200  # the probes need no token


async def test_regions_come_from_the_callers_catalog(
        xfer: Service, sessions: dict[str, ksa_session.Session]) -> None:
    status, body = await call(xfer, "GET", "/v1/regions", sessions["alice"])
    assert status == 200
    assert body["home_region"] == TARGET
    assert {(r["name"], r["copy_from"]) for r in body["regions"]} == {(SOURCE, True),
                                                                     (TARGET, False)}
    for region, field in (("Atlantis", "source_region"), (TARGET, "source_region")):
        status, error = await call(xfer, "POST", f"/v1/images/{uuid.uuid4()}/copies",
                                   sessions["alice"], {"source_region": region})
        assert status == 400 and error["error"]["field"] == field, error
    status, error = await call(xfer, "POST", "/v1/images/not-a-uuid/copies",
                               sessions["alice"], {"source_region": SOURCE})
    assert status == 400 and error["error"]["field"] == "image_id"


async def test_another_project_cannot_copy_see_or_find_it_and_a_reader_cannot_copy(
        xfer: Service, sessions: dict[str, ksa_session.Session]) -> None:
    alice, bob, carol = sessions["alice"], sessions["bob"], sessions["carol"]
    source = upload(alice, SOURCE, os.urandom(300_000))

    job = await copy_image(xfer, bob, source["id"])
    assert job["state"] == "failed"
    assert job["error"]["code"] == "source_image_not_found"
    alices = await copy_image(xfer, alice, source["id"])
    assert alices["state"] == "succeeded", alices["error"]

    status, _ = await call(xfer, "GET", f"/v1/jobs/{alices['id']}", bob)
    assert status == 404
    status, page = await call(xfer, "GET", "/v1/jobs", bob)
    assert alices["id"] not in {j["id"] for j in page["jobs"]}
    status, found = await call(xfer, "GET", f"/v1/images?checksum={source['checksum']}", bob)
    assert status == 200 and found["images"] == []
    status, _ = await call(xfer, "POST", f"/v1/jobs/{alices['id']}/cancel", bob)
    assert status == 404

    # carol reads alpha's jobs but may not copy
    status, seen = await call(xfer, "GET", f"/v1/jobs/{alices['id']}", carol)
    assert status == 200 and seen["id"] == alices["id"]
    status, error = await call(xfer, "POST", f"/v1/images/{source['id']}/copies", carol,
                               {"source_region": SOURCE})
    assert status == 403 and error["error"]["code"] == "forbidden"


async def test_the_checksum_index_finds_both_and_a_second_copy_is_deduplicated_unless_forced(
        xfer: Service, sessions: dict[str, ksa_session.Session]) -> None:
    alice = sessions["alice"]
    source = upload(alice, SOURCE, os.urandom(700_000), chunked=False)  # a plain object
    first = await copy_image(xfer, alice, source["id"])
    assert first["state"] == "succeeded", first["error"]

    status, found = await call(
        xfer, "GET", f"/v1/images?os_hash_value={source['os_hash_value']}", alice)
    assert status == 200
    by_region = {match["region"]: match for match in found["images"]}
    assert by_region[SOURCE]["image"]["id"] == source["id"]
    assert by_region[TARGET]["image"]["id"] == first["image"]["target_image_id"]
    assert all(match["count"] == 1 for match in found["images"])

    second = await copy_image(xfer, alice, source["id"])
    assert second["state"] == "succeeded" and second["deduplicated"] is True
    assert second["image"]["target_image_id"] == first["image"]["target_image_id"]

    forced = await copy_image(xfer, alice, source["id"], force=True)
    assert forced["state"] == "succeeded" and forced["deduplicated"] is False
    assert forced["image"]["target_image_id"] != first["image"]["target_image_id"]
    status, found = await call(xfer, "GET", f"/v1/images?checksum={source['checksum']}", alice)
    counts = {match["region"]: match["count"] for match in found["images"]}
    assert counts == {SOURCE: 1, TARGET: 2}
    oldest = {match["region"]: match["image"]["id"] for match in found["images"]}
    assert oldest[TARGET] == first["image"]["target_image_id"]


async def test_an_image_with_an_upper_case_id_is_copied_by_that_id(
        xfer: Service, sessions: dict[str, ksa_session.Session]) -> None:
    """Glance keeps the id an image was created with, upper case too, in its record and in its
    container's name (`glance_<id>`): the copy asks for the image by the id as written."""
    alice = sessions["alice"]
    data = os.urandom(2 * MiB + 9)
    image_id = str(uuid.uuid4()).upper()
    source = upload(alice, SOURCE, data, image_id=image_id)
    assert source["id"] == image_id

    job = await copy_image(xfer, alice, image_id)

    assert job["state"] == "succeeded", job["error"]
    assert job["image"]["source_image_id"] == image_id
    copy = glance_image(alice, TARGET, job["image"]["target_image_id"])
    assert (copy["status"], copy["checksum"], copy["source_image_id"]) == (
        "active", hashlib.md5(data).hexdigest(), image_id)


async def test_a_source_in_glances_file_store_is_read_through_its_glance_verified(
        xfer: Service, cloud: devcloud.CloudInfo,
        sessions: dict[str, ksa_session.Session]) -> None:
    """Issue 10's third item: a store xfer cannot read itself; the bytes come through the
    source Glance's ranged /file, in parallel, and are verified against the image."""
    alice = sessions["alice"]
    data = os.urandom(9 * MiB + 5)  # several chunks: ranged reads, not one GET
    source = upload(alice, SOURCE, data, through=cloud.glances[SOURCE].file_store_url)
    assert source["direct_url"].startswith("file://")

    job = await copy_image(xfer, alice, source["id"])

    assert job["state"] == "succeeded", job["error"]
    assert job["source"] == {"region": SOURCE, "container": "glance:file",
                             "object": source["id"]}
    assert job["verification"] == "end_to_end" and job["md5"] == hashlib.md5(data).hexdigest()
    copy = glance_image(alice, TARGET, job["image"]["target_image_id"])
    assert copy["status"] == "active"
    assert (copy["checksum"], copy["os_hash_value"]) == (source["checksum"],
                                                        source["os_hash_value"])


async def test_a_source_in_glances_file_store_is_unsupported_store_when_told_not_to_read_through_glance(
        image_settings: Settings, cloud: devcloud.CloudInfo,
        sessions: dict[str, ksa_session.Session]) -> None:
    alice = sessions["alice"]
    source = upload(alice, SOURCE, os.urandom(100_000),
                    through=cloud.glances[SOURCE].file_store_url)
    async with running_service(image_settings.with_overrides(read_through_glance=False)) as xfer:
        job = await copy_image(xfer, alice, source["id"])

    assert job["state"] == "failed"
    assert job["error"]["code"] == "unsupported_store", job["error"]
    assert "file" in job["error"]["message"]


async def test_a_cancel_mid_copy_leaves_no_image_and_no_data(
        image_settings: Settings, sessions: dict[str, ksa_session.Session]) -> None:
    alice = sessions["alice"]
    source = upload(alice, SOURCE, os.urandom(24 * MiB), chunked=True)
    slow = image_settings.with_overrides(max_rate_mb=4.0)  # about 6 s: time to cancel
    async with running_service(slow) as xfer:
        status, job = await call(xfer, "POST", f"/v1/images/{source['id']}/copies", alice,
                                 {"source_region": SOURCE})
        assert status == 201
        async with asyncio.timeout(30):
            while job["bytes_done"] == 0 or not job["image"]["target_image_id"]:
                await asyncio.sleep(0.1)
                _, job = await call(xfer, "GET", f"/v1/jobs/{job['id']}", alice)
        status, _ = await call(xfer, "POST", f"/v1/jobs/{job['id']}/cancel", alice)
        assert status == 202
        ended = await wait_job(xfer, alice, job["id"])
        cleanup = await xfer.cleaned_up(job["id"], headers=token(alice))
    assert ended["state"] == "cancelled"
    copy_id = ended["image"]["target_image_id"]
    assert no_image(alice, TARGET, copy_id)
    assert container_gone(alice, TARGET, copy_id)
    assert {duty["duty"]: duty["state"] for duty in cleanup} == {
        "remove_target_image": "done", "remove_image_data": "done", "end_trust": "done"}


async def test_the_copy_outlives_the_users_token_and_no_token_is_stored(
        xfer: Service, cloud: devcloud.CloudInfo, image_settings: Settings,
        sessions: dict[str, ksa_session.Session]) -> None:
    """The token that asked is revoked at once: xfer goes on through its trust."""
    alice = sessions["alice"]
    source = upload(alice, SOURCE, os.urandom(2 * MiB))
    own = user_session(cloud, "alice")
    user_token = own.get_token()
    status, job = await call(xfer, "POST", f"/v1/images/{source['id']}/copies", own,
                             {"source_region": SOURCE})
    assert status == 201
    revoked = own.delete(f"{cloud.keystone.auth_url}/auth/tokens",  # type: ignore[union-attr]
                         headers={"X-Subject-Token": user_token})
    assert revoked.status_code == 204
    ended = await wait_job(xfer, alice, job["id"])
    assert ended["state"] == "succeeded", ended["error"]
    # and no token is stored: not in any row of any table
    connection = await asyncpg.connect(image_settings.database_url)
    try:
        for table in ("jobs", "job_segments", "job_transitions", "objects"):
            rows = await connection.fetch(f"SELECT row_to_json(t)::text AS row FROM {table} t")
            assert not any(user_token in row["row"] for row in rows), table
    finally:
        await connection.close()




async def test_an_slo_source_is_copied_and_a_member_the_copy_is_shared_with_can_download_it(
        xfer: Service, sessions: dict[str, ksa_session.Session]) -> None:
    alice, bob = sessions["alice"], sessions["bob"]
    data = os.urandom(3 * MiB + 17)
    source = upload(alice, SOURCE, data, chunked=False)
    replace_with_slo(alice, SOURCE, source["id"], data, MiB)

    job = await copy_image(xfer, alice, source["id"], name="shared copy")

    assert job["state"] == "succeeded", job["error"]
    copy_id = job["image"]["target_image_id"]
    share(alice, bob, TARGET, copy_id)
    downloaded = bob.get(f"{image_api(alice, TARGET)}/v2/images/{copy_id}/file")
    assert downloaded.status_code == 200 and downloaded.content == data


class StepRecorder:
    """The image observer of these tests: records what the flow reports, stores nothing."""

    handing_over = False

    def __init__(self) -> None:
        self.created: list[str] = []
        self.steps: list[str] = []

    async def find_verified_copy(self, *_: object) -> None:
        return None

    async def planned(self, _plan: object) -> None:
        return None

    async def segment_started(self, _segment: object, _attempt: int) -> None:
        return None

    async def segment_failed(self, _segment: object, _attempt: int, _error: object) -> None:
        return None

    async def segment_written(self, _segment: object, _etag: str) -> None:
        return None

    async def verifying(self) -> None:
        return None

    async def source_found(self, _source: object, _checksum: str | None) -> None:
        return None

    async def target_image_planned(self, image_id: str, _container: str) -> None:
        self.created.append(image_id)

    async def image_step(self, step: object) -> None:
        self.steps.append(str(step))


def copies_of(session: ksa_session.Session, image_id: str) -> list[str]:
    listing = session.get(f"{image_api(session, TARGET)}/v2/images",
                          params={"source_image_id": image_id}).json()
    return [image["id"] for image in listing["images"]]


async def test_a_job_taken_over_continues_from_its_recorded_step_and_makes_one_image(
        image_settings: Settings, sessions: dict[str, ksa_session.Session]) -> None:
    """What a worker taking over a job does, at each step it may find recorded: the target
    image made and empty (copy into it), or registered (wait for it): never a second image."""
    alice = sessions["alice"]
    source = upload(alice, SOURCE, os.urandom(2 * MiB), chunked=False)
    async with http_session(image_settings) as http:
        openstack = OpenStackClients.from_settings(image_settings, http)
        assert openstack is not None
        copier = ImageCopier(image_settings, openstack,
                             Copier(image_settings, SwiftRegions(http, dict(image_settings.regions))))
        token = alice.get_token()
        info = await openstack.keystone.validate(token)
        trust = await openstack.keystone.create_trust(
            token, info, datetime.now(UTC) + timedelta(hours=1))
        job = ImageCopyJob(uuid.uuid4(), SOURCE, TARGET, source["id"], trust)

        # crashed after creating the image: it is queued and empty
        made = alice.post(f"{image_api(alice, TARGET)}/v2/images", json={
            "name": "made before the crash", "disk_format": "raw", "container_format": "bare",
            "source_image_id": source["id"]}).json()
        observer = StepRecorder()
        outcome = await copier.copy(replace(job, target_image_id=made["id"],
                                            step=ImageStep.CREATED), observer)
        assert outcome.image_id == made["id"] and observer.created == []
        assert observer.steps == ["copied", "registered"]
        assert glance_image(alice, TARGET, made["id"])["checksum"] == source["checksum"]

        # crashed after registering: the image is there (active by now), nothing is redone
        observer = StepRecorder()
        again = await copier.copy(replace(job, target_image_id=made["id"],
                                          step=ImageStep.REGISTERED), observer)
        assert again.image_id == made["id"]
        assert observer.created == [] and observer.steps == []
    assert copies_of(alice, source["id"]) == [made["id"]]


async def test_a_trust_deleted_or_expired_fails_the_copy_as_trust_invalid(
        image_settings: Settings) -> None:
    async with http_session(image_settings) as http:
        openstack = OpenStackClients.from_settings(image_settings, http)
        assert openstack is not None
        copier = ImageCopier(image_settings, openstack,
                             Copier(image_settings, SwiftRegions(http, dict(image_settings.regions))))
        job = ImageCopyJob(uuid.uuid4(), SOURCE, TARGET, str(uuid.uuid4()), uuid.uuid4().hex)
        with pytest.raises(CopyFailed) as failure:
            await copier.copy(job, StepRecorder())
    assert failure.value.code == "trust_invalid"
    assert "ask for the copy again" in failure.value.message
