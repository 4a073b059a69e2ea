"""The image feature's own rules, without a Glance: what a copy carries over from its source
(images/properties.py), which images have data, and where xfer reads an image's bytes
(images/data.py). The wire format they read is tests/test_proto_glance.py's."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.test_proto_glance import ACCOUNT, IMAGE, IMAGE_ID
from xfer.engine.types import ObjectRef
from xfer.errors import ImageNotActive, ImageRejected, UnsupportedStore
from xfer.images.data import require_active, swift_location
from xfer.images.properties import NEVER_COPIED, propagated_body
from xfer.images.types import ThroughGlance
from xfer.jobs import records
from xfer.jobs.records import source_names
from xfer.proto.glance import Image, SwiftLocation


def test_only_an_active_image_has_data() -> None:
    assert require_active(IMAGE, "RegionOne") is IMAGE
    with pytest.raises(ImageNotActive, match="queued") as caught:
        require_active(replace(IMAGE, status="queued"), "RegionOne")
    assert caught.value.code == "source_image_not_active"




# --- propagated_body -------------------------------------------------------------------------

def body(image: Image = IMAGE, **options: Any) -> dict[str, Any]:
    return propagated_body(image, source_region="RegionOne", **options)


def test_the_copy_keeps_the_record_and_every_property_once() -> None:
    assert body() == {
        "name": "cirros", "disk_format": "qcow2", "container_format": "bare",
        "min_disk": 1, "min_ram": 64, "tags": ["a", "b"], "protected": False,
        "visibility": "shared", "os_hidden": False, "hw_disk_bus": "virtio",
        "os_distro": "cirros", "architecture": "x86_64", "description": "a test image",
        "source_region": "RegionOne", "source_image_id": IMAGE_ID}


@pytest.mark.parametrize("key", sorted(NEVER_COPIED))
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
    assert not set(copied) & NEVER_COPIED
    assert not [key for key in copied if key.startswith("os_glance_")]
    assert copied["source_image_id"] == IMAGE_ID


# --- where the bytes are ---------------------------------------------------------------------

def at(direct_url: str | None) -> Image:
    return replace(IMAGE, direct_url=direct_url)


def test_a_multi_tenant_swift_location_splits_as_glance_store_splits_it() -> None:
    assert swift_location(IMAGE, "http://elsewhere/v1/AUTH_p9") == SwiftLocation(
        ACCOUNT, f"glance_{IMAGE_ID}", IMAGE_ID)
    secure = swift_location(at("swift+https://swift.example:443/v1/AUTH_p2/c/o"), ACCOUNT)
    assert secure == SwiftLocation("https://swift.example:443/v1/AUTH_p2", "c", "o")
    prefixed = swift_location(at("swift+http://h:80/swift/v1/AUTH_p2/c/o"), ACCOUNT)
    assert prefixed.storage_url == "http://h:80/swift/v1/AUTH_p2"


def test_names_are_taken_as_written_since_glance_store_never_decodes_them() -> None:
    """Measured: Glance reads a location ending in `/o%41` from the object named `o%41`."""
    location = swift_location(at(f"swift+{ACCOUNT}/c%20x/o%41%2F"), ACCOUNT)
    assert (location.container, location.object) == ("c%20x", "o%41%2F")
    spaced = swift_location(at(f"swift+{ACCOUNT}/glance_1/a b+ü"), ACCOUNT)
    assert spaced.object == "a b+ü"


def test_without_direct_url_the_multi_tenant_convention() -> None:
    assert swift_location(at(None), "http://s/v1/AUTH_owner/") == SwiftLocation(
        "http://s/v1/AUTH_owner", f"glance_{IMAGE_ID}", IMAGE_ID)
    with pytest.raises(UnsupportedStore, match="store"):
        swift_location(replace(at(None), stores="file,rbd"), "http://s/v1/AUTH_owner")
    with pytest.raises(UnsupportedStore, match="no object store"):
        swift_location(at(None), "")


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
        swift_location(at(url), ACCOUNT)
    assert caught.value.code == "unsupported_store"
    assert "multi-tenant Swift store" in caught.value.message and IMAGE_ID in caught.value.message


def test_a_source_read_through_glance_keeps_the_name_jobs_and_the_api_gave_it() -> None:
    """The job's row and its JSON name it `glance:file/<image id>`, as before it was typed;
    only an image job's source reads back as ThroughGlance."""
    through = ThroughGlance("RegionOne", IMAGE_ID)
    assert source_names(through) == ("glance:file", IMAGE_ID)
    assert source_names(ObjectRef("RegionOne", "c", "o")) == ("c", "o")
    row = {"kind": "image", "source_region": "RegionOne", "source_container": "glance:file",
           "source_object": IMAGE_ID}
    assert records._source(row) == through
    assert records._source({**row, "kind": "object"}) == ObjectRef("RegionOne", "glance:file",
                                                                    IMAGE_ID)
    assert through.describe() == f"image {IMAGE_ID} through the Glance of RegionOne"
