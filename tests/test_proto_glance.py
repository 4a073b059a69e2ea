"""xfer.proto.glance without a Glance: image records and replies as Glance 33 writes them, what a
copy carries over, and where an image's bytes are."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xfer.errors import (
    AuthError,
    ImageNotActive,
    ImageNotFound,
    ImageRejected,
    QuotaExceeded,
    RegistrationFailed,
    TargetForbidden,
    UnsupportedStore,
    XferError,
)
from xfer.proto import glance
from xfer.proto.glance import Image, SwiftLocation
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


def test_a_source_must_be_active() -> None:
    assert glance.require_active(IMAGE, "RegionOne") is IMAGE
    with pytest.raises(ImageNotActive, match="queued") as caught:
        glance.require_active(replace(IMAGE, status="queued"), "RegionOne")
    assert caught.value.code == "source_image_not_active"


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


# --- propagated_body -------------------------------------------------------------------------

def body(image: Image = IMAGE, **options: Any) -> dict[str, Any]:
    return glance.propagated_body(image, source_region="RegionOne", **options)


def test_the_copy_keeps_the_record_and_every_property_once() -> None:
    assert body() == {
        "name": "cirros", "disk_format": "qcow2", "container_format": "bare",
        "min_disk": 1, "min_ram": 64, "tags": ["a", "b"], "protected": False,
        "visibility": "shared", "os_hidden": False, "hw_disk_bus": "virtio",
        "os_distro": "cirros", "architecture": "x86_64", "description": "a test image",
        "source_region": "RegionOne", "source_image_id": IMAGE_ID}


@pytest.mark.parametrize("key", sorted(glance.NEVER_COPIED))
def test_never_copied_keys_stay_behind_even_as_properties(key: str) -> None:
    image = replace(IMAGE, properties={**IMAGE.properties, key: "x"})
    assert key not in body(image)
    assert key not in body(image, allow=("*",), deny=())


def test_os_glance_properties_never_travel_whatever_deny_says() -> None:
    assert not [k for k in body(deny=()) if k.startswith("os_glance_")]
    assert not [k for k in body(allow=("os_glance_*",), deny=()) if k.startswith("os_glance")]


def inherited(copied: dict[str, Any]) -> set[str]:
    """The source's properties in a copy's body (not the provenance, which is always set)."""
    return {key for key in copied if key in IMAGE.properties} - PROVENANCE


PROVENANCE = {"source_region", "source_image_id"}


def test_allow_and_deny_patterns_choose_properties_but_not_the_record() -> None:
    only_hw = body(allow=("hw_*", "os_distro"))
    assert inherited(only_hw) == {"hw_disk_bus", "os_distro"}
    assert only_hw["name"] == "cirros" and only_hw["min_ram"] == 64  # the record is kept
    assert inherited(body(deny=("os_*", "descr?ption"))) == {"hw_disk_bus", "architecture"}
    assert inherited(body(allow=("HW_*",))) == set()  # case-sensitive
    bare = body(allow=())
    assert inherited(bare) == set() and PROVENANCE <= set(bare) and bare["name"] == "cirros"


def test_provenance_overrides_inherited_values_and_extra_overrides_last() -> None:
    copied = body()
    assert (copied["source_region"], copied["source_image_id"]) == ("RegionOne", IMAGE_ID)
    extra = body(extra={"source_region": "mine", "note": "copied"}, name="renamed")
    assert extra["source_region"] == "mine" and extra["note"] == "copied"
    assert extra["name"] == "renamed"


@pytest.mark.parametrize("visibility, copied", [
    ("private", "private"), ("shared", "shared"), ("community", "community"),
    ("public", "private")])
def test_a_public_source_becomes_a_private_copy(visibility: str, copied: str) -> None:
    assert body(replace(IMAGE, visibility=visibility))["visibility"] == copied


def test_absent_name_and_formats_are_left_to_glance() -> None:
    bare = body(replace(IMAGE, name=None, disk_format=None, container_format=None))
    assert not {"name", "disk_format", "container_format"} & set(bare)


def test_unicode_of_three_bytes_travels_and_four_bytes_is_refused_before_glance() -> None:
    accented = replace(IMAGE, name="ünïcødé ☃", tags=("日本",),
                       properties={"description": "€ ✓", "ключ": "значение"})
    copied = body(accented)
    assert copied["name"] == "ünïcødé ☃" and copied["ключ"] == "значение"
    cases = [
        ({"name": "cirros \U0001F600"}, {}, "'name'"),
        ({"tags": ("ok", "\U0001F600")}, {}, "tag"),
        ({"properties": {"description": "\U00010348"}}, {}, "'description'"),
        ({"properties": {"\U0001F600": "v"}}, {}, "property name"),
        ({}, {"extra": {"note": "\U0001F680"}}, "'note'"),
        ({}, {"name": "\U0001F680"}, "'name'"),
    ]
    for changes, options, named in cases:
        with pytest.raises(ImageRejected, match=named) as caught:
            body(replace(IMAGE, **changes), **options)
        assert "4 bytes" in caught.value.message
        assert caught.value.code == "target_image_rejected"


@given(st.dictionaries(st.text(min_size=1, max_size=20), st.text(max_size=5), max_size=8))
def test_no_never_copied_or_reserved_key_ever_reaches_the_body(properties: dict[str, str]) -> None:
    image = replace(IMAGE, properties=properties)
    try:
        copied = body(image)
    except ImageRejected:
        return
    assert not set(copied) & glance.NEVER_COPIED
    assert not [key for key in copied if key.startswith("os_glance_")]
    assert copied["source_image_id"] == IMAGE_ID


# --- where the bytes are ---------------------------------------------------------------------

def at(direct_url: str | None) -> Image:
    return replace(IMAGE, direct_url=direct_url)


def test_a_multi_tenant_swift_location_splits_as_glance_store_splits_it() -> None:
    assert glance.swift_location(IMAGE, "http://elsewhere/v1/AUTH_p9") == SwiftLocation(
        ACCOUNT, f"glance_{IMAGE_ID}", IMAGE_ID)
    secure = glance.swift_location(at("swift+https://swift.example:443/v1/AUTH_p2/c/o"), ACCOUNT)
    assert secure == SwiftLocation("https://swift.example:443/v1/AUTH_p2", "c", "o")
    prefixed = glance.swift_location(at("swift+http://h:80/swift/v1/AUTH_p2/c/o"), ACCOUNT)
    assert prefixed.storage_url == "http://h:80/swift/v1/AUTH_p2"


def test_names_are_taken_as_written_since_glance_store_never_decodes_them() -> None:
    """Measured: Glance reads a location ending in `/o%41` from the object named `o%41`."""
    location = glance.swift_location(at(f"swift+{ACCOUNT}/c%20x/o%41%2F"), ACCOUNT)
    assert (location.container, location.object) == ("c%20x", "o%41%2F")
    spaced = glance.swift_location(at(f"swift+{ACCOUNT}/glance_1/a b+ü"), ACCOUNT)
    assert spaced.object == "a b+ü"


def test_without_direct_url_the_multi_tenant_convention() -> None:
    assert glance.swift_location(at(None), "http://s/v1/AUTH_owner/") == SwiftLocation(
        "http://s/v1/AUTH_owner", f"glance_{IMAGE_ID}", IMAGE_ID)
    with pytest.raises(UnsupportedStore, match="store"):
        glance.swift_location(replace(at(None), stores="file,rbd"), "http://s/v1/AUTH_owner")
    with pytest.raises(UnsupportedStore, match="no object store"):
        glance.swift_location(at(None), "")


@pytest.mark.parametrize("url, store", [
    ("swift+config://ref1/glance/" + IMAGE_ID, "single-tenant"),
    ("swift://user:key@auth.example/v1/glance/" + IMAGE_ID, "credentials in the URL"),
    ("swift+https://user:key@auth.example/v2.0/glance/" + IMAGE_ID, "not a multi-tenant"),
    ("file:///var/lib/glance/images/" + IMAGE_ID, "file store"),
    ("rbd://fsid/images/" + IMAGE_ID + "/snap", "Ceph RBD"),
    ("cinder://volume-id", "Cinder"),
    ("http://example.com/cirros.img", "the web"),
    ("https://example.com/cirros.img", "the web"),
    ("s3://bucket/" + IMAGE_ID, "S3"),
    ("gopher://example.com/x", "does not know (gopher"),
    ("not a url", "does not know (no scheme"),
    ("swift+http://h:1/v1/AUTH_p1/" + IMAGE_ID, "not a multi-tenant"),
    ("swift+http://h:1/v1/AUTH_p1/c/", "not a multi-tenant"),
    ("swift+http://h:1/v1/AUTH_p1/c/o?x=1", "not a multi-tenant"),
])
def test_any_other_store_is_unsupported_saying_what_would_work(url: str, store: str) -> None:
    with pytest.raises(UnsupportedStore, match=re.escape(store)) as caught:
        glance.swift_location(at(url), ACCOUNT)
    assert caught.value.code == "unsupported_store"
    assert "multi-tenant Swift store" in caught.value.message and IMAGE_ID in caught.value.message


def test_location_url_is_what_glance_writes_for_its_own_images() -> None:
    location = glance.swift_location(IMAGE, ACCOUNT)
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
    url = glance.location_url(location)
    assert glance.swift_location(at(url), "http://unused/v1/AUTH_x") == location


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
