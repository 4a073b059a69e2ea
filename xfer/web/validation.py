"""Every input of the REST API, declared once: the pydantic models and types here check type,
range and characters of each field, and give openapi.py the JSON Schemas of the same rules.
What handlers get out is checked values (a JobRequest for the jobs layer, a query model for
the web layer); every failure is a RequestError naming the field as a dotted path
(`source.container`, `limit`, `Idempotency-Key`).

Names, per field (README, "API"):
- object names are supported exactly as Swift stores them, `..`, `.`, `//` and a trailing `/`
  included (xfer.proto.swift.object_url addresses exactly them), within Swift's limits: 1 to
  1024 bytes of UTF-8, no NUL;
- container names are refused where Swift refuses them (empty, `/`, NUL, over 256
  characters: Swift's proxy counts characters, and such containers work end to end) and also
  when they are `.` or `..`: Swift takes those, but python-swiftclient (so Glance's Swift
  store) and any normalising proxy resolve `/v1/AUTH_x/..` to the account, so no other tool
  could reach such a container: in a request it is a mistake or a traversal.
Object names are limited in bytes, as Swift documents, although its proxy counts characters:
a longer name fails in the object server (on ext4, 507 "Insufficient Storage" for the xattrs,
and the proxy then shuns that server for a minute), so xfer never sends one.
Every string a request carries, in a body, a query, a path or a header, is of one type: `Text`
(below), last in its field's annotation so that it runs before any other check. It refuses what
PostgreSQL text, Swift or Glance cannot hold exactly as sent, so that whatever a request gets
past it is stored letter for letter or refused with a 400 naming the field: text that is not
valid Unicode (a lone surrogate from a `\\ud800` JSON escape, an undecodable header byte) and
NUL (PostgreSQL text and jsonb refuse it). Text that goes to Glance (an image copy's name, its
properties' names and values) is also held to what Glance takes: no character outside the
Basic Multilingual Plane (Glance refuses 4-byte UTF-8 with a 400), a name and a property name
of at most 255 characters, a property value of at most 65535 bytes (its column is TEXT, 65535
bytes in MySQL, Glance's usual database). Measured against the local cloud's Glance 33
(SQLite): it stores every other character exactly (C0 and C1 controls, U+2028, U+FEFF,
U+FFFE, U+FFFF, leading and trailing spaces, right-to-left marks), answers 500 for a lone
surrogate and 400 for 4-byte UTF-8 or a longer name or property name.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from multidict import MultiMapping
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from xfer.engine.types import ObjectRef, TargetSpec
from xfer.errors import RequestError
from xfer.jobs.records import ImageCopyRequest, JobRequest
from xfer.jobs.states import JobState
from xfer.proto.glance import glance_text_problem

# Swift's default constraints (swift.common.constraints); see the module's docstring.
MAX_CONTAINER_NAME_CHARACTERS = 256
MAX_OBJECT_NAME_BYTES = 1024
# A target's segments are named after it (TargetSpec.segment_name: name, job id, index), and
# Swift's limit holds for those names too.
SEGMENT_NAME_OVERHEAD = len(TargetSpec(ObjectRef("", "", ""), "").segment_name(
    str(uuid.UUID(int=0)), 0))
INT64_MAX = 2**63 - 1  # PostgreSQL bigint, where segment_size is stored
MAX_TARGETS = 8  # of one fan-out job
MAX_RATE_MB = 1e9  # a per-job cap above 1 PB/s caps nothing; bytes/s stays a finite float
MAX_PAGE = 500
DEFAULT_PAGE = 100
# Patterns mean the same in pydantic's regex engine (Rust) and in JSON Schema (ECMA 262): `$`
# is the end of the text there, not "before a final newline" as in Python's `re.match`.
CONTAINER_PATTERN = r"^[^/\x00]+$"
OBJECT_PATTERN = r"^[^\x00]+$"
MD5_PATTERN = r"^[0-9a-fA-F]{32}$"
SHA512_PATTERN = r"^[0-9a-fA-F]{128}$"
IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,200}$"  # URL-safe base64 without padding
NO_NUL_PATTERN = "^[^\x00]*$"
PATTERN_MEANINGS = {
    CONTAINER_PATTERN: "a container name cannot contain '/' or NUL",
    OBJECT_PATTERN: "an object name cannot contain NUL",
    MD5_PATTERN: "must be an MD5 as 32 hexadecimal digits",
    SHA512_PATTERN: "must be a SHA-512 as 128 hexadecimal digits",
    IDEMPOTENCY_KEY_PATTERN: "must be 1 to 255 printable ASCII characters",
    CURSOR_PATTERN: "not a cursor this API gave as `next`",
    NO_NUL_PATTERN: "cannot contain NUL (U+0000): PostgreSQL text cannot hold it",
}
# The configured region names are known only at run time: openapi.py turns this mark into
# the enum of the names of the service it describes.
REGIONS_MARK = "x-configured-regions"
REGION_SCHEMA = {"type": "string", REGIONS_MARK: True}


@dataclass(frozen=True)
class Text:
    """The one type of every string a request carries (see the module's docstring), put last in
    a field's `Annotated[...]` so that it checks first, before lengths, patterns and anything
    else: valid Unicode, no NUL; with `glance`, nothing outside the Basic Multilingual Plane;
    at most `max_bytes` bytes of UTF-8 when given (lengths in characters are StringConstraints'
    job, as JSON Schema counts them)."""

    glance: bool = False
    max_bytes: int | None = None

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler
                                     ) -> CoreSchema:
        return core_schema.no_info_before_validator_function(self.check, handler(source))

    def check(self, value: Any) -> Any:
        if not isinstance(value, str):
            return value  # the field's own type check names what it is instead
        try:
            encoded = value.encode()
        except UnicodeEncodeError:
            raise PydanticCustomError("unicode", "must be valid Unicode text (a lone surrogate "
                                                 "is not)") from None
        if "\x00" in value:
            raise PydanticCustomError("nul", "cannot contain NUL (U+0000): PostgreSQL text "
                                             "cannot hold it")
        if self.glance and (problem := glance_text_problem(value)) is not None:
            raise PydanticCustomError("four_byte_utf8", problem)
        if self.max_bytes is not None and len(encoded) > self.max_bytes:
            raise PydanticCustomError("too_long", "longer than {limit} bytes of UTF-8",
                                      {"limit": self.max_bytes})
        return value


STORED = Text()
GLANCE_TEXT = Text(glance=True)


def _not_a_dot_segment(value: str) -> str:
    if value in (".", ".."):
        raise PydanticCustomError("dot_segment", "a container cannot be named '.' or '..' (see "
                                                 "the README: no Swift client could reach it)")
    return value


def _known_region(value: str, info: ValidationInfo) -> str:
    assert info.context is not None, "validated without the configured regions"
    regions: Collection[str] = info.context["regions"]
    if value not in regions:
        raise PydanticCustomError("unknown_region", "unknown region; known: {known}",
                                  {"known": ", ".join(sorted(regions))})
    return value


Region = Annotated[str, AfterValidator(_known_region), WithJsonSchema(REGION_SCHEMA), STORED]
ContainerName = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_CONTAINER_NAME_CHARACTERS,
                           pattern=CONTAINER_PATTERN),
    AfterValidator(_not_a_dot_segment),
    Field(description="not '.' or '..'",
          json_schema_extra={"not": {"enum": [".", ".."]}}),
    STORED]
ObjectName = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_OBJECT_NAME_BYTES,
                           pattern=OBJECT_PATTERN),
    Field(description=f"at most {MAX_OBJECT_NAME_BYTES} bytes of UTF-8; any other name, '..' "
                      "and '/' included, is the object of exactly that name"),
    Text(max_bytes=MAX_OBJECT_NAME_BYTES)]
# The lengths repeat what the patterns say for JSON Schema validators that, like Python's,
# search with `re` (where `$` also matches before a final newline).
Md5Hex = Annotated[str, StringConstraints(min_length=32, max_length=32, pattern=MD5_PATTERN),
                   STORED]
Sha512Hex = Annotated[str, StringConstraints(min_length=128, max_length=128,
                                             pattern=SHA512_PATTERN), STORED]
IdempotencyKey = Annotated[str, StringConstraints(max_length=255, pattern=IDEMPOTENCY_KEY_PATTERN),
                           STORED]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SourceBody(_Body):
    region: Region
    container: ContainerName
    object: ObjectName


class TargetBody(_Body):
    """container and object default to the source's"""

    region: Region
    container: ContainerName | None = None
    object: ObjectName | None = None


def _present_only(schema: dict[str, Any]) -> None:
    """The JSON Schema of an optional field that may be absent but never null."""
    (kind,) = [kind for kind in schema.pop("anyOf") if kind != {"type": "null"}]
    schema.pop("default", None)
    schema.update(kind)


class JobRequestBody(_Body):
    # Exactly one of target and targets; validate_job_request names the field when not.
    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["target"]},
                                                           {"required": ["targets"]}]})

    source: SourceBody
    target: TargetBody | None = Field(None, json_schema_extra=_present_only)
    targets: Annotated[list[TargetBody], Field(min_length=1, max_length=MAX_TARGETS)] | None = (
        Field(None, json_schema_extra=_present_only,
              description="several targets of one job, each as `target` (container and "
                          "object default to the source's), all written from one reading"))
    checksum: Md5Hex | None = Field(None, description="expected content MD5 (Glance's "
                                    "checksum); needed to verify an SLO or DLO source end to end")
    segment_size: Annotated[int, Field(ge=1, le=INT64_MAX)] | None = Field(
        None, description="bytes per segment (grown to fit the target's manifest limit); "
                          "an integer written as one, not 1.0 or 1e6")
    segment_container: ContainerName | None = Field(
        None, description="where segments go; default: the target's container")
    max_rate_mb: Annotated[float, Field(gt=0, le=MAX_RATE_MB, allow_inf_nan=False)] | None = (
        Field(None, description="MB/s (10^6 bytes) this job may read from the source, below "
                                "the process's own cap"))

    @field_validator("target", "targets", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise PydanticCustomError("null", "give it or leave it out; null is not a target")
        return value


def _not_reserved(key: str) -> str:
    if key in RESERVED_IMAGE_KEYS or key.startswith("os_glance"):
        raise PydanticCustomError("reserved", "is set by Glance or by xfer, not by a request")
    return key


# What a request may not set on the copy: Glance's own fields, per-image data, provenance.
RESERVED_IMAGE_KEYS = frozenset({
    "id", "owner", "status", "locations", "location", "direct_url", "checksum",
    "os_hash_algo", "os_hash_value", "size", "virtual_size", "created_at", "updated_at",
    "file", "schema", "self", "stores", "name", "tags", "visibility", "protected",
    "disk_format", "container_format", "min_disk", "min_ram", "deleted", "deleted_at",
    "source_region", "source_image_id", "xfer_job_id"})
MAX_IMAGE_PROPERTIES = 128
CatalogRegion = Annotated[str, AfterValidator(_known_region),
                          Field(description="a region of your Keystone catalog (GET /v1/regions)"),
                          STORED]
# Glance's limits (glance/api/v2/images.py: the image schema's name, the check of a custom
# property's name; the property value's TEXT column); see the module's docstring.
MAX_IMAGE_NAME_CHARACTERS = 255
MAX_PROPERTY_NAME_CHARACTERS = 255
MAX_PROPERTY_VALUE_BYTES = 65535
GLANCE_CHARACTERS = ("no NUL and no character outside the Basic Multilingual Plane (4-byte "
                     "UTF-8, e.g. emoji, which Glance refuses)")
ImageName = Annotated[str, StringConstraints(min_length=1, max_length=MAX_IMAGE_NAME_CHARACTERS,
                                             pattern=NO_NUL_PATTERN), GLANCE_TEXT]
PropertyKey = Annotated[str, StringConstraints(min_length=1,
                                               max_length=MAX_PROPERTY_NAME_CHARACTERS),
                        AfterValidator(_not_reserved), GLANCE_TEXT]
PropertyValue = Annotated[str, StringConstraints(max_length=MAX_PROPERTY_VALUE_BYTES,
                                                 pattern=NO_NUL_PATTERN),
                          Text(glance=True, max_bytes=MAX_PROPERTY_VALUE_BYTES)]


class ImageCopyBody(_Body):
    """POST /v1/images/{image_id}/copies, asked in the target region"""

    source_region: CatalogRegion
    name: ImageName | None = Field(None, description=f"the copy's name; default: the "
                                   f"source's; {GLANCE_CHARACTERS}")
    properties: Annotated[dict[PropertyKey, PropertyValue],
                          Field(max_length=MAX_IMAGE_PROPERTIES)] = Field(
        default_factory=dict, description=f"set on the copy over the source's properties; "
                                          f"names of 1 to {MAX_PROPERTY_NAME_CHARACTERS} "
                                          f"characters, values of at most "
                                          f"{MAX_PROPERTY_VALUE_BYTES} bytes of UTF-8, both with "
                                          f"{GLANCE_CHARACTERS}")
    force: bool = Field(False, description="copy even when an active image with the same "
                                           "data is already in this region")


# Glance's own pattern for an image id (glance/api/v2/images.py, the image schema): a user
# may create an image with an upper-case id, and Glance keeps it as given, and looks ids up as
# they are (a case-sensitive match on some databases), so rewriting one (`urn:uuid:`, braces,
# upper to lower case) could address another image, or none, instead of the one named.
IMAGE_ID_PATTERN = (r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}"
                    r"-[0-9a-fA-F]{12}$")
PATTERN_MEANINGS[IMAGE_ID_PATTERN] = ("a Glance image id is a UUID written "
                                      "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx in hex digits")
ImageId = Annotated[str, StringConstraints(max_length=36, pattern=IMAGE_ID_PATTERN),
                    Field(description="a Glance image id, used exactly as written"), STORED]


def image_id_of(text: str) -> str:
    """A Glance image id from a path, exactly as written."""
    return _validated(ImagePath, {"image_id": text}, (), "image_id").image_id


def validate_image_copy(body: Any, image_id: str, catalog_regions: Collection[str],
                        home_region: str, project_id: str, user_id: str) -> ImageCopyRequest:
    checked = _validated(ImageCopyBody, body, catalog_regions, "body")
    source_image_id = image_id_of(image_id)
    if checked.source_region == home_region:
        raise RequestError("source_region", f"is this region ({home_region}): ask the xfer "
                                            "of the region to copy to; it pulls from the other")
    return ImageCopyRequest(checked.source_region, home_region, source_image_id, project_id,
                            user_id, checked.name, dict(checked.properties), checked.force)


def _decimal(value: Any) -> Any:
    """A query's digits as an integer; anything else is left for the type check to refuse
    (pydantic's own string parsing would take ' 10', '1_0' and '10.0')."""
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,19}", value):
        return int(value)
    return value


def encode_cursor(created_at: datetime, job_id: uuid.UUID) -> str:
    """An opaque token for the page after the job created at `created_at` with `job_id`."""
    position = json.dumps([created_at.isoformat(), str(job_id)])
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def _decode_cursor(token: Any) -> tuple[datetime, uuid.UUID]:
    not_ours = PydanticCustomError("cursor", PATTERN_MEANINGS[CURSOR_PATTERN])
    if not isinstance(token, str) or not re.fullmatch(CURSOR_PATTERN[1:-1], token):
        raise not_ours
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        at, after = datetime.fromisoformat(created_at), uuid.UUID(job_id)
        # the database compares in UTC: a time that has no UTC form (year 1 at +14:00) is no
        # position of a job
        at.astimezone(UTC)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise not_ours from None  # binascii.Error and JSONDecodeError are ValueErrors
    if at.tzinfo is None:
        raise not_ours
    return at, after


# A query's values are all strings, whatever they become: each is Text first.
Cursor = Annotated[tuple[datetime, uuid.UUID], BeforeValidator(_decode_cursor),
                   WithJsonSchema({"type": "string", "pattern": CURSOR_PATTERN}), STORED]
PageLimit = Annotated[int, Field(ge=1, le=MAX_PAGE, strict=True), BeforeValidator(_decimal),
                      STORED]
State = Annotated[JobState, WithJsonSchema({"type": "string",
                                            "enum": [state.value for state in JobState]}),
                  STORED]


class _Query(BaseModel):
    # Not strict: a query's values are strings, and `state` names a JobState by its value.
    model_config = ConfigDict(extra="forbid", frozen=True)


class JobsQuery(_Query):
    """GET /v1/jobs"""

    state: State | None = Field(None, description="only jobs in it")
    region: Region | None = Field(
        None, description="jobs whose source or target is in it")
    limit: PageLimit = Field(DEFAULT_PAGE, description="jobs per page")
    cursor: Cursor | None = Field(None, description="`next` of the previous page", examples=[
        encode_cursor(datetime(2026, 1, 1, tzinfo=UTC), uuid.UUID(int=0))])


class ObjectsQuery(_Query):
    """GET /v1/objects: `checksum` or `os_hash_value` (or both)"""

    checksum: Md5Hex | None = Field(None, description="MD5", examples=["0" * 32])
    os_hash_value: Sha512Hex | None = Field(None, description="SHA-512")
    region: Region | None = Field(None, description="only copies in it")


class ImagesQuery(_Query):
    """GET /v1/images: `checksum` or `os_hash_value` (or both)"""

    checksum: Md5Hex | None = Field(None, description="MD5 (Glance's checksum)",
                                    examples=["0" * 32])
    os_hash_value: Sha512Hex | None = Field(None, description="SHA-512")


class ImagePath(_Query):
    """The path of /v1/images/{image_id}/copies and /v2/images/{image_id}[/file]"""

    image_id: ImageId


class KeyHeaders(_Query):
    """The header of a request that creates a job"""

    idempotency_key: IdempotencyKey | None = Field(
        None, alias="Idempotency-Key", description="the same key and body again returns the "
                                                   "job it created (200)")


M = TypeVar("M", bound=BaseModel)
JOB_ID = TypeAdapter(uuid.UUID)


def _field(location: tuple[int | str, ...], root: str) -> str:
    """A dotted path, list items by index: `targets[1].region`."""
    path = ""
    for part in location:
        # an unknown field's name is the client's own text: a 60 KiB key is not echoed whole
        path += f"[{part}]" if isinstance(part, int) else f".{str(part)[:100]}"
    return path.lstrip(".") or root


def _message(error: Mapping[str, Any], root: str) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required"
    if kind == "extra_forbidden":
        return "unknown parameter" if root == "query" else "unknown field"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be a JSON object"
    if kind == "string_unicode":  # values have their own check: this is a field's name
        return "a field name is not valid Unicode text (a lone surrogate is not)"
    if kind == "string_pattern_mismatch":
        return PATTERN_MEANINGS.get(error["ctx"]["pattern"], str(error["msg"]))
    return str(error["msg"])


def _validated(model: type[M], data: Any, regions: Collection[str], root: str) -> M:
    try:
        return model.model_validate(data, context={"regions": regions})
    except ValidationError as invalid:
        error = invalid.errors(include_url=False, include_input=False)[0]
        location, message = error["loc"], _message(error, root)
        if location[-1:] == ("[key]",):  # a name in a map (a property's): the map is the field
            message = f"the name {ascii(location[-2])[:100]} {message}"
            location = location[:-2]
        raise RequestError(_field(location, root), message) from None


def validate_job_request(body: Any, regions: Collection[str]) -> JobRequest:
    """The checked request: each target's container and object default to the source's."""
    checked = _validated(JobRequestBody, body, regions, "body")
    source = ObjectRef(checked.source.region, checked.source.container, checked.source.object)
    if checked.target is not None and checked.targets is not None:
        raise RequestError("targets", "give target or targets, not both")
    if checked.targets is not None:
        bodies, names = checked.targets, [f"targets[{i}]" for i in range(len(checked.targets))]
    elif checked.target is not None:
        bodies, names = [checked.target], ["target"]
    else:
        raise RequestError("target", "required (or targets, a list of them)")
    targets = [_target(source, target, name) for target, name in zip(bodies, names, strict=True)]
    _check_distinct(targets, names, checked.segment_container)
    return JobRequest(source, targets[0],
                      None if checked.checksum is None else checked.checksum.lower(),
                      checked.segment_size, checked.segment_container,
                      tuple(targets[1:]), checked.max_rate_mb)


def _target(source: ObjectRef, body: TargetBody, name: str) -> ObjectRef:
    target = ObjectRef(body.region,
                       source.container if body.container is None else body.container,
                       source.object if body.object is None else body.object)
    room = MAX_OBJECT_NAME_BYTES - SEGMENT_NAME_OVERHEAD
    if len(target.object.encode()) > room:
        raise RequestError(f"{name}.object", f"longer than {room} bytes of UTF-8: xfer names "
                                             "the target's segments after it")
    if source == target:
        raise RequestError(name, "is the same object as the source")
    return target


def _check_distinct(targets: list[ObjectRef], names: list[str],
                    segment_container: str | None) -> None:
    """No object twice, and no two targets sharing segment names: their segments are named
    after the object in its segment container (TargetSpec.segment_name), so with one given
    segment_container two targets in one region must not have the same object name."""
    seen: dict[ObjectRef, str] = {}
    segments: dict[tuple[str, str], str] = {}
    for target, name in zip(targets, names, strict=True):
        if target in seen:
            raise RequestError(name, f"is the same object as {seen[target]}")
        seen[target] = name
        if segment_container is None:
            continue
        key = (target.region, target.object)
        if key in segments:
            raise RequestError(name, f"would share its segment names with {segments[key]} "
                                     "(same region and object name, one segment_container)")
        segments[key] = name


def validate_query(model: type[M], query: MultiMapping[str], regions: Collection[str]) -> M:
    for name in query:
        if len(query.getall(name)) > 1:
            raise RequestError(_field((name,), "query"), "given more than once")
    return _validated(model, dict(query), regions, "query")


def objects_query(query: MultiMapping[str], regions: Collection[str]) -> ObjectsQuery:
    checked = validate_query(ObjectsQuery, query, regions)
    if checked.checksum is None and checked.os_hash_value is None:
        raise RequestError("checksum", "give checksum (MD5) or os_hash_value (SHA-512)")
    return checked


def images_query(query: MultiMapping[str]) -> ImagesQuery:
    checked = validate_query(ImagesQuery, query, ())
    if checked.checksum is None and checked.os_hash_value is None:
        raise RequestError("checksum", "give checksum (MD5) or os_hash_value (SHA-512)")
    return checked


def idempotency_key(headers: MultiMapping[str]) -> str | None:
    values = headers.getall("Idempotency-Key", [])
    if len(values) > 1:
        raise RequestError("Idempotency-Key", "given more than once")
    if not values:
        return None
    return _validated(KeyHeaders, {"Idempotency-Key": values[0]}, (), "header").idempotency_key


def job_id(text: str) -> uuid.UUID | None:
    """The job id of a path, or None for any text that is none (its route answers 404)."""
    try:
        return JOB_ID.validate_python(text)
    except ValidationError:
        return None


def _bounded_int(digits: str) -> int:
    # Without this, json.loads refuses an integer of over 4300 digits (CPython's limit) with a
    # ValueError that cannot say where; over 20 digits is outside int64 anyway, so a 21-digit
    # stand-in keeps the sign and lets the field's own range check name the field.
    return int(digits[:22])


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def parse_json_body(raw: bytes) -> Any:
    """The body as JSON values: UTF-8, standard JSON only (no NaN or Infinity)."""
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise RequestError("body", f"not UTF-8 text (byte {exc.start})") from None
    try:
        return json.loads(text, parse_int=_bounded_int, parse_constant=_not_json)
    except json.JSONDecodeError as exc:
        raise RequestError("body", f"not valid JSON: {exc.msg} at position {exc.pos}") from None
    except ValueError as exc:
        raise RequestError("body", f"not valid JSON: {exc}") from None
    except RecursionError:
        raise RequestError("body", "not valid JSON: nested too deeply") from None
