"""xfer.proto.glance without a Glance: image records and replies as Glance 33 writes them, and
glance_store's Swift location URLs (what a copy carries over and where xfer reads an image's
bytes: tests/test_image_policy.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xfer.errors import (
    AuthError,
    ImageNotFound,
    ImageRejected,
    QuotaExceeded,
    RegistrationFailed,
    TargetForbidden,
    XferError,
)
from xfer.proto import glance
from xfer.proto.glance import SwiftLocation
from xfer.proto.http import Reply

GLANCE = "http://127.0.0.1:9292"
TOKEN = "gAAAAABuser-token"
SERVICE_TOKEN = "gAAAAABservice-token"
IMAGE_ID = "0808a772-95c5-49a0-981f-08744c418763"
ACCOUNT = "http://127.0.0.1:8080/v1/AUTH_p1"


def record(**overrides: Any) -> dict[str, Any]:
    """An image record as Glance 33 answers it (a copy of a real one, plus properties)."""
    document = {
        "name": "cirros", "disk_format": "qcow2", "container_format": "bare",
        "visibility": "shared", "size": 50000, "virtual_size": 117440512, "status": "active",
        "checksum": "b366725c596b64396f8d92bcd70f849a", "protected": True, "min_ram": 64,
        "min_disk": 1, "owner": "p1", "os_hidden": False, "os_hash_algo": "sha512",
        "os_hash_value": "2cd5" * 32, "id": IMAGE_ID,
        "created_at": "2026-12-01T23:15:34Z", "updated_at": "2026-12-01T23:15:35Z",
        "tags": ["a", "b"], "self": f"/v2/images/{IMAGE_ID}",
        "file": f"/v2/images/{IMAGE_ID}/file", "schema": "/v2/schemas/image",
        "direct_url": f"swift+{ACCOUNT}/glance_{IMAGE_ID}/{IMAGE_ID}",
        "hw_disk_bus": "virtio", "os_distro": "cirros", "architecture": "x86_64",
        "description": "a test image", "os_glance_import_task": "t1",
        "os_glance_stores": "swift", "stores": "swift", "locations": [],
        "source_region": "RegionZero", "source_image_id": "older",
    }
    document.update(overrides)
    return document


IMAGE = glance.image_from(record())


def reply(status: int, body: Any = None, **headers: str) -> Reply:
    return Reply(status, headers, b"" if body is None else json.dumps(body).encode())


def error(status: int, message: str) -> Reply:
    """Glance's JSON error reply (to Accept: application/json), with webob's trailing markup."""
    return reply(status, {"message": f"{message}<br /><br />\n\n\n", "code": f"{status} X",
                          "title": "X"})


def test_an_image_record_splits_into_fields_and_properties() -> None:
    assert (IMAGE.id, IMAGE.name, IMAGE.status, IMAGE.owner) == (IMAGE_ID, "cirros", "active", "p1")
    assert (IMAGE.size, IMAGE.virtual_size, IMAGE.min_ram, IMAGE.min_disk) == (
        50000, 117440512, 64, 1)
    assert IMAGE.tags == ("a", "b") and IMAGE.protected and IMAGE.stores == "swift"
    assert IMAGE.direct_url and IMAGE.updated_at == "2026-12-01T23:15:35Z"
    assert set(IMAGE.properties) == {
        "os_hidden", "hw_disk_bus", "os_distro", "architecture", "description",
        "os_glance_import_task", "os_glance_stores", "source_region", "source_image_id"}
    queued = glance.image_from({"id": "i", "status": "queued", "size": None, "checksum": None,
                                "tags": [], "min_ram": 0, "min_disk": 0})
    assert queued.size is None and queued.checksum is None and queued.properties == {}


def test_requests_ask_for_json_with_the_token() -> None:
    request = glance.image_request(GLANCE + "/", TOKEN, IMAGE_ID)
    assert request.url == f"{GLANCE}/v2/images/{IMAGE_ID}"
    assert request.headers == {"X-Auth-Token": TOKEN, "Accept": "application/json"}
    assert glance.parse_image(request, reply(200, record())) == IMAGE
    create = glance.create_image_request(GLANCE, TOKEN, {"name": "x"})
    assert create.method == "POST" and create.url == f"{GLANCE}/v2/images"
    assert json.loads(create.body or b"") == {"name": "x"}
    delete = glance.delete_image_request(GLANCE, TOKEN, IMAGE_ID)
    assert delete.method == "DELETE" and delete.url.endswith(IMAGE_ID)


def test_image_not_found_or_not_visible_is_image_not_found() -> None:
    request = glance.image_request(GLANCE, TOKEN, IMAGE_ID)
    for status in (403, 404):
        with pytest.raises(ImageNotFound, match=IMAGE_ID) as caught:
            glance.parse_image(request, error(status, f"No image found with ID {IMAGE_ID}"))
        assert caught.value.code == "source_image_not_found"
        assert "No image found" in caught.value.message and "<br" not in caught.value.message
    with pytest.raises(AuthError):
        glance.parse_image(request, error(401, "This server could not verify"))


@pytest.mark.parametrize("status, message, error_class, code", [
    (403, "You are not authorized to complete add_image action.", TargetForbidden,
     "target_forbidden"),
    (413, "The limit has been exceeded on the number of allowed image properties. "
          "Attempted: 130, Maximum: 128", QuotaExceeded, "target_quota_exceeded"),
    (400, "Provided object does not match schema 'image': 'bogus' is not one of [None]",
     ImageRejected, "target_image_rejected"),
])
def test_create_refusals_carry_glances_message(status: int, message: str,
                                               error_class: type, code: str) -> None:
    request = glance.create_image_request(GLANCE, TOKEN, {"name": "x"})
    with pytest.raises(error_class) as caught:
        glance.parse_created_image(request, error(status, message))
    assert caught.value.code == code and message in caught.value.message
    assert glance.parse_created_image(request, reply(201, record(status="queued"))).id == IMAGE_ID


def test_glance_message_reads_html_pages_too() -> None:
    page = (b"<html>\n <head>\n  <title>400 Bad Request</title>\n </head>\n <body>\n  <h1>400 "
            b"Bad Request</h1>\n  Name can&#x27;t contain 4 byte unicode characters.<br /><br />"
            b"\n\n\n\n </body>\n</html>")
    assert glance.glance_message(Reply(400, {}, page)) == (
        "400 Bad Request 400 Bad Request Name can't contain 4 byte unicode characters.")


def test_delete_is_true_once_and_false_when_gone() -> None:
    request = glance.delete_image_request(GLANCE, TOKEN, IMAGE_ID)
    assert glance.parse_deleted(request, reply(204)) is True
    assert glance.parse_deleted(request, error(404, "Failed to find image")) is False
    with pytest.raises(TargetForbidden, match="protected"):
        glance.parse_deleted(request, error(403, "Image is protected"))


def test_add_location_uses_api_2_17_with_the_service_token() -> None:
    url = f"swift+{ACCOUNT}/glance_{IMAGE_ID}/{IMAGE_ID}"
    request = glance.add_location_request(GLANCE, TOKEN, SERVICE_TOKEN, IMAGE_ID, url,
                                          "sha512", "ab" * 64)
    assert (request.method, request.url) == ("POST", f"{GLANCE}/v2/images/{IMAGE_ID}/locations")
    assert request.headers["OpenStack-API-Version"] == "image 2.17"
    assert request.headers["X-Service-Token"] == SERVICE_TOKEN
    assert request.headers["X-Auth-Token"] == TOKEN
    assert json.loads(request.body or b"") == {"url": url, "validation_data": {
        "os_hash_algo": "sha512", "os_hash_value": "ab" * 64}}
    glance.parse_location_added(request, reply(202))
    with pytest.raises(TargetForbidden, match="service role"):
        glance.parse_location_added(request, error(403, "http store must be enabled"))
    with pytest.raises(RegistrationFailed, match="Image has active task"):
        glance.parse_location_added(request, error(409, "Image has active task"))
    assert SERVICE_TOKEN not in repr(request) and TOKEN not in repr(request)


def test_list_pages_oldest_first_until_glance_gives_no_next() -> None:
    request = glance.list_images_request(GLANCE, TOKEN, checksum="b3" * 16, limit=1)
    assert request.params == {"sort_key": "created_at", "sort_dir": "asc",
                              "checksum": "b3" * 16, "status": "active", "limit": "1"}
    page = {"images": [record()], "first": "/v2/images?limit=1",
            "next": f"/v2/images?checksum=b3&status=active&limit=1&marker={IMAGE_ID}"}
    assert glance.parse_images(request, reply(200, page)) == ([IMAGE], IMAGE_ID)
    assert glance.parse_images(request, reply(200, {"images": [record()]})) == ([IMAGE], None)
    assert glance.parse_images(request, reply(200, {"images": [], "next": "/v2/images?marker=x"})
                               ) == ([], None)
    by_hash = glance.list_images_request(GLANCE, TOKEN, os_hash_value="ff", status=None,
                                         marker="m")
    assert by_hash.params == {"sort_key": "created_at", "sort_dir": "asc", "os_hash_value": "ff",
                              "marker": "m"}


def test_tasks_oldest_first() -> None:
    request = glance.image_tasks_request(GLANCE, TOKEN, IMAGE_ID)
    assert request.url == f"{GLANCE}/v2/images/{IMAGE_ID}/tasks"
    tasks = {"tasks": [
        {"type": "location_import", "status": "failure", "created_at": "2026-12-01T23:15:36",
         "message": "Task failed due to Internal Error"},
        {"type": "location_import", "status": "success", "created_at": "2026-12-01T23:15:34",
         "message": ""}]}
    assert [(task.status, task.message) for task in glance.parse_image_tasks(
        request, reply(200, tasks))] == [("success", ""),
                                         ("failure", "Task failed due to Internal Error")]


# --- location URLs ---------------------------------------------------------------------------

def test_location_url_is_what_glance_writes_for_its_own_images() -> None:
    assert IMAGE.direct_url is not None
    location = glance.parse_location_url(IMAGE.direct_url)
    assert location == SwiftLocation(ACCOUNT, f"glance_{IMAGE_ID}", IMAGE_ID)
    assert glance.location_url(location) == IMAGE.direct_url
    assert glance.location_url(SwiftLocation(ACCOUNT + "/", "c", "o")) == f"swift+{ACCOUNT}/c/o"
    assert glance.location_url(SwiftLocation("https://s/v1/AUTH_x", "c", "o")) == (
        "swift+https://s/v1/AUTH_x/c/o")
    for container, obj in (("c", "a/b"), ("c", "o?x"), ("c#", "o"), ("c", "o\n"), ("c\t", "o"),
                           ("", "o"), ("c", "")):
        with pytest.raises(ValueError):
            glance.location_url(SwiftLocation(ACCOUNT, container, obj))


_NAME = st.text(st.characters(blacklist_characters="/?#", blacklist_categories=("Cs", "Cc")),
                min_size=1, max_size=30)


@given(container=_NAME, obj=_NAME, secure=st.booleans())
def test_location_url_and_swift_location_round_trip(container: str, obj: str,
                                                    secure: bool) -> None:
    storage = ("https" if secure else "http") + "://127.0.0.1:8080/v1/AUTH_p1"
    location = SwiftLocation(storage, container, obj)
    assert glance.parse_location_url(glance.location_url(location)) == location


@pytest.mark.parametrize("url", [
    "swift+config://ref1/glance/i", "swift://user:key@auth.example/v1/glance/i",
    "swift+https://user:key@auth.example/v2.0/glance/i", "file:///var/lib/glance/images/i",
    "not a url", "swift+http://h:1/v1/AUTH_p1/i", "swift+http://h:1/v1/AUTH_p1/c/",
    "swift+http://h:1/v1/AUTH_p1/c/o?x=1", "swift+http://h:1/v1/AUTH_p1/c/o#f",
    "swift+http://h:1/v1/AUTH_p1/c/o://x"])
def test_only_a_multi_tenant_swift_location_parses(url: str) -> None:
    with pytest.raises(ValueError):
        glance.parse_location_url(url)
    assert glance.location_scheme("SWIFT+HTTPS://h/v1/AUTH_p/c/o") == "swift+https"
    assert glance.location_scheme("not a url") == ""


@pytest.mark.parametrize("status, headers, error", [
    (206, {"Content-Range": "bytes 10-19/100"}, None),
    (200, {}, "IntegrityError-or-RemoteError"),  # a whole body for a part: refused
    (206, {"Content-Range": "bytes 10-18/100"}, "IntegrityError"),
    (206, {"Content-Range": "bytes 10-19/101"}, "IntegrityError"),
    (206, {}, "IntegrityError"),
    (404, {}, "ImageNotFound"), (403, {}, "ImageNotFound"), (500, {}, "RemoteError"),
])
def test_a_ranged_file_read_takes_exactly_the_range_asked(status: int, headers: dict[str, str],
                                                          error: str | None) -> None:
    request = glance.file_range_request("http://g", "token", "abc", 10, 10)
    assert request.headers["Range"] == "bytes=10-19"
    reply = Reply(status, headers)
    if error is None:
        glance.check_file_range_reply(request, reply, 10, 10, 100)
        return
    with pytest.raises(XferError) as raised:
        glance.check_file_range_reply(request, reply, 10, 10, 100)
    assert type(raised.value).__name__ in error.split("-or-")


def test_the_whole_image_may_come_as_200() -> None:
    request = glance.file_range_request("http://g", "token", "abc", 0, 100)
    glance.check_file_range_reply(request, Reply(200, {}), 0, 100, 100)
