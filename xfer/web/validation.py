"""Pure: check a job request and name the first offending field."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from xfer.engine.types import ObjectRef
from xfer.errors import RequestError
from xfer.jobs.records import JobRequest

# Swift's default constraints (swift.common.constraints).
MAX_CONTAINER_NAME_LENGTH = 256
MAX_OBJECT_NAME_LENGTH = 1024
MIN_SEGMENT_SIZE = 1
MD5_HEX = re.compile(r"[0-9a-fA-F]{32}")  # always with fullmatch
SHA512_HEX = re.compile(r"[0-9a-fA-F]{128}")
IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
_TOP_FIELDS = {"source", "target", "checksum", "segment_size", "segment_container"}
_SOURCE_FIELDS = {"region", "container", "object"}


def _check_fields(value: Any, path: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RequestError(path or "body", "must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        name = f"{path}.{unknown[0]}" if path else unknown[0]
        raise RequestError(name, f"unknown field; allowed: {', '.join(sorted(allowed))}")
    return value


def container_name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise RequestError(field, "must be a non-empty string")
    if "/" in value:
        raise RequestError(field, "a container name cannot contain '/'")
    if len(value.encode()) > MAX_CONTAINER_NAME_LENGTH:
        raise RequestError(field, f"longer than {MAX_CONTAINER_NAME_LENGTH} bytes")
    return value


def object_name(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise RequestError(field, "must be a non-empty string")
    if len(value.encode()) > MAX_OBJECT_NAME_LENGTH:
        raise RequestError(field, f"longer than {MAX_OBJECT_NAME_LENGTH} bytes")
    if "\x00" in value:
        raise RequestError(field, "must not contain NUL")
    return value


def region_name(value: Any, field: str, regions: Collection[str]) -> str:
    if not isinstance(value, str) or not value:
        raise RequestError(field, "must be a non-empty string")
    if value not in regions:
        raise RequestError(field, f"unknown region {value!r}; known: {', '.join(sorted(regions))}")
    return value


def validate_job_request(body: Any, regions: Collection[str]) -> JobRequest:
    """The checked request: target container and object default to the source's."""
    body = _check_fields(body, "", _TOP_FIELDS)
    for required in ("source", "target"):
        if required not in body:
            raise RequestError(required, "required")
    source = _check_fields(body["source"], "source", _SOURCE_FIELDS)
    target = _check_fields(body["target"], "target", _SOURCE_FIELDS)
    for field in ("region", "container", "object"):
        if field not in source:
            raise RequestError(f"source.{field}", "required")
    if "region" not in target:
        raise RequestError("target.region", "required")
    src = ObjectRef(region_name(source["region"], "source.region", regions),
                    container_name(source["container"], "source.container"),
                    object_name(source["object"], "source.object"))
    dst = ObjectRef(region_name(target["region"], "target.region", regions),
                    container_name(target.get("container", source["container"]),
                                   "target.container"),
                    object_name(target.get("object", source["object"]), "target.object"))
    checksum = body.get("checksum")
    if checksum is not None:
        if not isinstance(checksum, str) or not MD5_HEX.fullmatch(checksum):
            raise RequestError("checksum", "must be an MD5 as 32 hexadecimal digits")
        checksum = checksum.lower()
    segment_size = body.get("segment_size")
    if segment_size is not None and (
            isinstance(segment_size, bool) or not isinstance(segment_size, int)
            or segment_size < MIN_SEGMENT_SIZE):
        raise RequestError("segment_size", f"must be an integer >= {MIN_SEGMENT_SIZE}")
    segment_container = body.get("segment_container")
    if segment_container is not None:
        segment_container = container_name(segment_container, "segment_container")
    if src == dst:
        raise RequestError("target", "is the same object as the source")
    return JobRequest(src, dst, checksum, segment_size, segment_container)
