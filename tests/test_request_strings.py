"""Issue 16, section 3: every string a request carries is stored exactly or refused with a 400
naming the field. The string fields are not listed here: they are found by walking the request
models of xfer/web/validation.py (bodies, queries, the path, headers), and each is given the
strings its `Text` refuses, first through the function its handler calls, then over HTTP to a
running xfer with Keystone. Only how to send each top-level model is written down (ROUTES), and
a test holds that every model of validation.py is reached from it."""

from __future__ import annotations

import asyncio
import inspect
import json
import types
import typing
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from annotated_types import MaxLen
from keystoneauth1 import session as ksa_session
from multidict import CIMultiDict, MultiDict
from pydantic import BaseModel

from tests.conftest import MiB, Service, keystone_settings, running_service
from tests.test_cloud_keystone_glance import upload, user_session
from tests.test_image_copy import SOURCE, TARGET, copy_image, glance_image
from tests.test_observe import api_only
from xfer.dev import devcloud
from xfer.errors import RequestError
from xfer.settings import Settings
from xfer.web import validation
from xfer.web.validation import Text

IMAGE = str(uuid.uuid4())
REGIONS = (SOURCE, TARGET)
HOME = TARGET
KEY = object()  # in a path: the name of a map's entry, rather than its value
VALID_KEY = "k"  # the entry a map's value is tried in


@dataclass(frozen=True)
class Route:
    """How a top-level model reaches xfer: where it sits in which request, beside what."""

    method: str
    path: str
    where: str  # body, query, path or header
    valid: dict[str, Any]  # a valid value of the model
    check: Callable[[dict[str, Any]], object]  # what the handler calls with it
    body: dict[str, Any] | None = None  # the request's body when the model is not it


JOB = {"source": {"region": "RegionOne", "container": "images", "object": "cirros.img"},
       "target": {"region": "RegionTwo"}}
COPY = {"source_region": "RegionOne"}
ROUTES = {
    validation.JobRequestBody: Route(
        "POST", "/v1/jobs", "body", JOB,
        lambda body: validation.validate_job_request(body, REGIONS)),
    validation.ImageCopyBody: Route(
        "POST", f"/v1/images/{IMAGE}/copies", "body", COPY,
        lambda body: validation.validate_image_copy(body, IMAGE, REGIONS, HOME, "p", "u")),
    validation.JobsQuery: Route(
        "GET", "/v1/jobs", "query", {},
        lambda query: validation.validate_query(validation.JobsQuery, MultiDict(query), REGIONS)),
    validation.ObjectsQuery: Route(
        "GET", "/v1/objects", "query", {"checksum": "0" * 32},
        lambda query: validation.objects_query(MultiDict(query), REGIONS)),
    validation.ImagesQuery: Route(
        "GET", "/v1/images", "query", {"checksum": "0" * 32},
        lambda query: validation.images_query(MultiDict(query))),
    validation.ImagePath: Route(
        "POST", "/v1/images/{image_id}/copies", "path", {"image_id": IMAGE},
        lambda path: validation.image_id_of(path["image_id"]), body=COPY),
    validation.KeyHeaders: Route(
        "POST", f"/v1/images/{IMAGE}/copies", "header", {},
        lambda headers: validation.idempotency_key(CIMultiDict(headers)), body=COPY),
}


@dataclass(frozen=True)
class StringField:
    model: type[BaseModel]  # the top-level model
    path: tuple[Any, ...]  # where in its input: names, list indexes, KEY
    text: Text
    max_length: int | None  # in characters, when StringConstraints has one

    @property
    def name(self) -> str:
        """The field as errors name it: a dotted path, a map's entry names the map."""
        parts = self.path[:-1] if self.path[-1] is KEY else self.path
        named = ""
        for part in parts:
            named += f"[{part}]" if isinstance(part, int) else f".{part}"
        return named.lstrip(".")

    def __str__(self) -> str:
        return f"{self.model.__name__}:{self.name}{'(name)' if self.path[-1] is KEY else ''}"


def _leaves(annotation: Any, metadata: list[Any], path: tuple[Any, ...]
            ) -> Iterator[tuple[tuple[Any, ...], Any, list[Any]]]:
    """(path, type, metadata) of every value a model's field holds, through optional values,
    lists, maps (their names and their values) and nested models."""
    if typing.get_origin(annotation) is typing.Annotated:
        inner, *more = typing.get_args(annotation)
        yield from _leaves(inner, [*more, *metadata], path)
    elif typing.get_origin(annotation) in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            if option is not type(None):
                yield from _leaves(option, metadata, path)
    elif typing.get_origin(annotation) is list:
        (item,) = typing.get_args(annotation)
        yield from _leaves(item, [], (*path, 0))
    elif typing.get_origin(annotation) is dict:
        key, value = typing.get_args(annotation)
        yield from _leaves(key, [], (*path, KEY))
        yield from _leaves(value, [], (*path, VALID_KEY))
    elif inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        for name, field in annotation.model_fields.items():
            yield from _leaves(field.annotation, list(field.metadata), (*path, field.alias or name))
    else:
        yield path, annotation, metadata


def nested_models(model: type[BaseModel]) -> Iterator[type[BaseModel]]:
    yield model
    for field in model.model_fields.values():
        for argument in _all_arguments(field.annotation):
            if inspect.isclass(argument) and issubclass(argument, BaseModel):
                yield from nested_models(argument)


def _all_arguments(annotation: Any) -> Iterator[Any]:
    yield annotation
    for argument in typing.get_args(annotation):
        yield from _all_arguments(argument)


def string_fields() -> Iterator[StringField]:
    """Every field a request gives as a string: in a body (strict JSON types), the fields of
    type str; in a query, the path or a header, every field (all of them arrive as text)."""
    for model in ROUTES:
        texts_only = bool(model.model_config.get("strict"))
        for path, kind, metadata in _leaves(model, [], ()):
            if texts_only and kind is not str:
                continue
            assert metadata and isinstance(metadata[-1], Text), (
                f"{model.__name__} {path}: a string of a request is of the one type Text, last "
                f"in its annotation so that it checks first; found {metadata}")
            lengths = [m.max_length for m in metadata if isinstance(getattr(m, "max_length", None), int)]
            lengths += [m.max_length for m in metadata if isinstance(m, MaxLen)]
            yield StringField(model, path, metadata[-1], min(lengths, default=None))


STRING_FIELDS = list(string_fields())


@dataclass(frozen=True)
class Refused:
    value: str
    says: str  # in the message when the check on the Python side sees it


def refused_values(field: StringField) -> list[Refused]:
    """What this field's Text refuses, each beside valid text, and one past each limit."""
    values = [Refused("ok\x00", "NUL"), Refused("ok\ud800", "valid Unicode")]
    if field.text.glance:
        values.append(Refused("ok\U0001f600", "4 bytes in UTF-8"))
    if field.text.max_bytes is not None:
        values.append(Refused("\u4e2d" * (field.text.max_bytes // 3 + 1), "bytes of UTF-8"))
    if field.max_length is not None:
        values.append(Refused("x" * (field.max_length + 1), ""))
    return values


CASES = [(field, refused) for field in STRING_FIELDS for refused in refused_values(field)]


def case_id(case: tuple[StringField, Refused]) -> str:
    field, refused = case
    return f"{field}={refused.value[:8]!a}{len(refused.value)}"


def with_value(valid: dict[str, Any], path: tuple[Any, ...], value: str) -> dict[str, Any]:
    """`valid` with `value` at `path` (a list item replaces the first; a map's name is added
    with a valid value)."""
    made = json.loads(json.dumps(valid))
    place: Any = made
    for depth, part in enumerate(path[:-1]):
        following = path[depth + 1]
        if isinstance(place, dict) and part not in place:
            place[part] = [] if isinstance(following, int) else {}
        if isinstance(place, list) and not place:
            place.append({"region": "RegionTwo", "object": "copy"})
        place = place[part]
    last = path[-1]
    if last is KEY:
        place[value] = "v"
    elif isinstance(place, list):
        place[:1] = [value]
    else:
        place[last] = value
    return made


def test_every_model_of_validation_is_reached_from_a_route() -> None:
    defined = {model for _, model in inspect.getmembers(validation, inspect.isclass)
               if issubclass(model, BaseModel) and model.__module__ == validation.__name__
               and not model.__name__.startswith("_")}
    reached = {nested for model in ROUTES for nested in nested_models(model)}
    assert defined == reached
    # the walk finds fields of every kind: nested, listed, a map's names and values, headers
    names = {str(field) for field in STRING_FIELDS}
    assert {"JobRequestBody:targets[0].region", "JobRequestBody:source.object",
            "ImageCopyBody:properties(name)", "ImageCopyBody:properties.k",
            "ImageCopyBody:name", "JobsQuery:limit", "JobsQuery:cursor", "ImagePath:image_id",
            "KeyHeaders:Idempotency-Key"} <= names, names


@pytest.mark.parametrize("field, refused", CASES, ids=[case_id(case) for case in CASES])
def test_each_string_field_refuses_what_cannot_be_stored_and_names_itself(
        field: StringField, refused: Refused) -> None:
    route = ROUTES[field.model]
    with pytest.raises(RequestError) as error:
        route.check(with_value(route.valid, field.path, refused.value))
    assert error.value.field == field.name
    assert refused.says in error.value.message


def test_the_valid_requests_are_valid() -> None:
    for route in ROUTES.values():
        route.check(route.valid)


# --- the same over HTTP, to a running xfer with Keystone ------------------------------------

@pytest.fixture(scope="module")
def admin(cloud: devcloud.CloudInfo) -> Iterator[ksa_session.Session]:
    """admin may do everything the API offers, object copies included."""
    session = user_session(cloud, "admin")
    yield session
    session.session.close()


@pytest.fixture
async def xfer(settings: Settings, cloud: devcloud.CloudInfo) -> AsyncIterator[Service]:
    # a body big enough for every value past its limit: the 64 KiB default is a 413 first
    async with api_only(keystone_settings(settings, cloud, HOME, max_body_bytes=MiB)) as (service, _):
        yield service


def _wire(value: str) -> bytes:
    """Text as bytes on the wire: a lone surrogate as the UTF-8 bytes it would have."""
    return value.encode("utf-8", "surrogatepass")


def raw_request(route: Route, token: str, field: StringField, value: str) -> bytes:
    parts = with_value(route.valid, field.path, value) if route.where != "body" else {}
    target = route.path
    if route.where == "path":
        target = target.format(**{name: quote(_wire(text), safe="")
                                  for name, text in parts.items()})
    if route.where == "query":
        target += "?" + "&".join(f"{quote(_wire(name), safe='')}={quote(_wire(text), safe='')}"
                                 for name, text in parts.items())
    body = route.body if route.where != "body" else with_value(route.valid, field.path, value)
    content = b"" if body is None else json.dumps(body).encode()  # "\ud800" as its escape
    head = [f"{route.method} {target} HTTP/1.1".encode(), b"Host: xfer",
            f"X-Auth-Token: {token}".encode(), b"Content-Type: application/json",
            f"Content-Length: {len(content)}".encode(), b"Connection: close"]
    if route.where == "header":
        head += [_wire(name) + b": " + _wire(text) for name, text in parts.items()]
    return b"\r\n".join(head) + b"\r\n\r\n" + content


async def exchange(service: Service, request: bytes) -> tuple[int, dict[str, Any]]:
    host, port = service.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        async with asyncio.timeout(20):
            reply = await reader.read()
    finally:
        writer.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"application/json" in head, reply[:500]
    return int(head.split()[1]), json.loads(body)


@pytest.mark.integration
async def test_over_http_each_string_field_is_a_json_400_naming_it(
        xfer: Service, admin: ksa_session.Session) -> None:
    token = admin.get_token()
    assert isinstance(token, str)
    refused_by_http = []
    for field, refused in CASES:
        route = ROUTES[field.model]
        status, reply = await exchange(xfer, raw_request(route, token, field, refused.value))
        assert status == 400, (str(field), refused.value[:20], reply)
        if route.where == "header" and "\x00" in refused.value:
            # aiohttp's HTTP parser refuses NUL in a header before any field exists
            assert reply["error"]["code"] == "bad_http_request", reply
            refused_by_http.append(str(field))
            continue
        assert reply["error"]["field"] == field.name, (str(field), refused.value[:20], reply)
    assert refused_by_http == ["KeyHeaders:Idempotency-Key"]


# --- what is accepted is stored exactly: through PostgreSQL and into Glance -----------------

# Unusual but valid: C0 and C1 controls, a line separator, a right-to-left override, a byte
# order mark, the noncharacters U+FFFE and U+FFFF, combining marks, quotes, backslashes, text
# that looks escaped, leading and trailing spaces, and each at its limit.
UNUSUAL_NAME = (" \t\x01\x1f\x7f\x85\u2028\u202e\ufeff\ufffe\uffff e\u0301 \"'\\ %00 \\u0000 "
                "<b>&amp;</b> 日本語 ")
UNUSUAL_PROPERTIES = {
    "k\u00e9y \t\x1f\u2028 ": "line\r\nbreak\x01\x85\u202e\ufeff\uffff",
    "x_" + "\u4e2d" * 253: "",  # a name of 255 characters of 3 bytes each
    "x_long": "\u00e9\u4e2d" * 2000,  # 10,000 bytes
    "x_quote\"'\\": "\\u0000 %00 {\"a\": 1}",
}


@pytest.mark.integration
async def test_unusual_unicode_in_name_and_properties_is_copied_exactly(
        settings: Settings, cloud: devcloud.CloudInfo) -> None:
    assert len(UNUSUAL_NAME) < 255 and max(map(len, UNUSUAL_PROPERTIES)) == 255
    alice = user_session(cloud, "alice")
    try:
        source = await asyncio.to_thread(upload, alice, SOURCE, b"unusual" * 1000)
        async with running_service(keystone_settings(settings, cloud, TARGET)) as xfer:
            job = await copy_image(xfer, alice, source["id"], name=UNUSUAL_NAME,
                                   properties=UNUSUAL_PROPERTIES)
            assert job["state"] == "succeeded", job["error"]
            # as stored in PostgreSQL, read back
            assert job["image"]["name"] == UNUSUAL_NAME
            assert job["image"]["properties"] == UNUSUAL_PROPERTIES
        copy = await asyncio.to_thread(glance_image, alice, TARGET,
                                       job["image"]["target_image_id"])
        assert copy["name"] == UNUSUAL_NAME
        for key, value in UNUSUAL_PROPERTIES.items():
            assert copy[key] == value, ascii(key)
        assert copy["checksum"] == source["checksum"]
    finally:
        alice.session.close()
