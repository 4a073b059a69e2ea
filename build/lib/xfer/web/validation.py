"""Pure: check a job request and name the first offending field."""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from xfer.errors import RequestError

# Swift's default constraints (swift.common.constraints).
MAX_CONTAINER_NAME_LENGTH = 256
MAX_OBJECT_NAME_LENGTH = 1024
MIN_SEGMENT_SIZE = 1
_MD5_HEX = re.compile(r"^[0-9a-fA-F]{32}$")
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


def validate_job_request(body: Any, regions: Collection[str]) -> dict[str, Any]:
    """Return the normalised request: target container and object default to the source's."""
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
    normalised: dict[str, Any] = {
        "source": {
            "region": region_name(source["region"], "source.region", regions),
            "container": container_name(source["container"], "source.container"),
            "object": object_name(source["object"], "source.object"),
        },
        "target": {
            "region": region_name(target["region"], "target.region", regions),
            "container": container_name(target.get("container", source["container"]),
                                        "target.container"),
            "object": object_name(target.get("object", source["object"]), "target.object"),
        },
    }
    checksum = body.get("checksum")
    if checksum is not None:
        if not isinstance(checksum, str) or not _MD5_HEX.match(checksum):
            raise RequestError("checksum", "must be an MD5 as 32 hexadecimal digits")
        normalised["checksum"] = checksum.lower()
    segment_size = body.get("segment_size")
    if segment_size is not None:
        if isinstance(segment_size, bool) or not isinstance(segment_size, int) or (
                segment_size < MIN_SEGMENT_SIZE):
            raise RequestError("segment_size", f"must be an integer >= {MIN_SEGMENT_SIZE}")
        normalised["segment_size"] = segment_size
    if body.get("segment_container") is not None:
        normalised["segment_container"] = container_name(body["segment_container"],
                                                         "segment_container")
    src, dst = normalised["source"], normalised["target"]
    if (src["region"], src["container"], src["object"]) == (
            dst["region"], dst["container"], dst["object"]):
        raise RequestError("target", "is the same object as the source")
    return normalised
