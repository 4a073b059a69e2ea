"""POST /v1/images/{id}/copies bodies (pure): each field's class of bad values is a 400 naming
that field; good values come out as an ImageCopyRequest."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xfer.errors import RequestError
from xfer.web.validation import (
    MAX_IMAGE_PROPERTIES,
    RESERVED_IMAGE_KEYS,
    image_id_of,
    images_query,
    validate_image_copy,
)

CATALOG = ("RegionOne", "RegionTwo")
IMAGE = "815967bc-8493-4c7d-952c-627210778020"  # fixed: test ids must be the same in every worker


def validate(body: Any, image_id: str = IMAGE) -> Any:
    return validate_image_copy(body, image_id, CATALOG, "RegionTwo", "project", "user")


def refused(body: Any, image_id: str = IMAGE) -> str:
    with pytest.raises(RequestError) as error:
        validate(body, image_id)
    return error.value.field


def test_a_minimal_request() -> None:
    checked = validate({"source_region": "RegionOne"})
    assert (checked.source_region, checked.target_region, checked.source_image_id) == (
        "RegionOne", "RegionTwo", IMAGE)
    assert (checked.name, dict(checked.properties), checked.force) == (None, {}, False)
    assert (checked.project_id, checked.user_id) == ("project", "user")


@given(st.uuids(), st.lists(st.booleans(), min_size=36, max_size=36))
def test_an_image_id_in_glances_form_is_taken_exactly_as_written(
        image: uuid.UUID, upper: list[bool]) -> None:
    """Glance creates images with the ids users give, upper case kept, and looks them up as
    written: the id that goes to Glance is the one in the path, letter for letter."""
    written = "".join(c.upper() if up else c for c, up in zip(str(image), upper, strict=True))
    assert validate({"source_region": "RegionOne"}, written).source_image_id == written
    assert image_id_of(written) == written


@pytest.mark.parametrize("bad", [
    "x", "", "../" + IMAGE, IMAGE + "0", IMAGE[:-1], "%2e%2e", IMAGE + "\n", " " + IMAGE,
    IMAGE.replace("-", ""), "{" + IMAGE + "}", "urn:uuid:" + IMAGE, IMAGE.replace("-", "_"),
    IMAGE[:8] + IMAGE[9:13] + "-" + IMAGE[8] + IMAGE[13:],  # dashes moved
    "g" + IMAGE[1:], "\u0663" + IMAGE[1:], "\uff10" + IMAGE[1:],  # not hex: Arabic 3, wide 0
    IMAGE[:-1] + "\x00", "0" * 8000])
def test_anything_else_is_a_400_naming_image_id(bad: str) -> None:
    assert refused({"source_region": "RegionOne"}, bad) == "image_id"
    with pytest.raises(RequestError) as error:
        image_id_of(bad)
    assert error.value.field == "image_id"


@pytest.mark.parametrize("value", ["Atlantis", "RegionTwo", "", None, 1, ["RegionOne"],
                                   "RegionOne\x00", "\ud800"])
def test_source_region_must_be_another_region_of_the_catalog(value: Any) -> None:
    assert refused({"source_region": value}) == "source_region"


def test_source_region_is_required() -> None:
    assert refused({}) == "source_region"


@pytest.mark.parametrize("value", ["", "x" * 256, 1, True, ["a"], "emoji 😀", "\ud800"])
def test_name(value: Any) -> None:
    assert refused({"source_region": "RegionOne", "name": value}) == "name"


@pytest.mark.parametrize("value", [1, "true", None, 0])
def test_force_is_a_boolean(value: Any) -> None:
    assert refused({"source_region": "RegionOne", "force": value}) == "force"


@pytest.mark.parametrize("properties, field", [
    ([], "properties"), ("a=b", "properties"), ({"k": 1}, "properties.k"),
    ({"k": None}, "properties.k"), ({"k": "😀"}, "properties.k"),
    ({"k": "x" * 65536}, "properties.k"), ({"x" * 256: "v"}, "properties"),
    ({"": "v"}, "properties"), ({"os_glance_import_task": "v"}, "properties"),
])
def test_properties(properties: Any, field: str) -> None:
    assert refused({"source_region": "RegionOne", "properties": properties}).startswith(field)


@pytest.mark.parametrize("key", sorted(RESERVED_IMAGE_KEYS))
def test_every_reserved_key_is_refused(key: str) -> None:
    assert refused({"source_region": "RegionOne", "properties": {key: "v"}}).startswith(
        "properties")


def test_at_most_so_many_properties() -> None:
    many = {f"k{i}": "v" for i in range(MAX_IMAGE_PROPERTIES + 1)}
    assert refused({"source_region": "RegionOne", "properties": many}) == "properties"
    fine = dict(list(many.items())[:MAX_IMAGE_PROPERTIES])
    assert len(validate({"source_region": "RegionOne", "properties": fine}).properties) == 128


def test_unknown_fields_and_non_objects() -> None:
    assert refused({"source_region": "RegionOne", "target_region": "RegionOne"}) == \
        "target_region"
    assert refused([]) == "body"


def test_the_images_query_needs_a_checksum_or_hash() -> None:
    from multidict import MultiDict
    with pytest.raises(RequestError) as error:
        images_query(MultiDict())
    assert error.value.field == "checksum"
    for name, value in (("checksum", "x"), ("os_hash_value", "0" * 127), ("other", "1")):
        with pytest.raises(RequestError) as error:
            images_query(MultiDict({name: value}))
        assert error.value.field == name
    assert images_query(MultiDict({"checksum": "A" * 32})).checksum == "A" * 32
