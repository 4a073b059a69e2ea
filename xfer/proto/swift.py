"""Swift object-store protocol, sans IO: request builders and reply parsers.

Covers v1 (tempauth) authentication, /info limits, object HEAD, ranged GET, PUT with ETag,
SLO manifest PUT (`heartbeat=on`) and DELETE (`multipart-manifest=delete`), container PUT.
Every error is a RemoteError carrying method, URL path, status and Swift's transaction id.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from urllib.parse import quote, urlsplit, urlunsplit

from xfer.errors import (
    AuthError,
    BodyRejected,
    IntegrityError,
    RemoteError,
    SegmentMismatch,
    SourceChanged,
)
from xfer.proto.http import Reply, Request

SERVICE = "swift"


@dataclass(frozen=True)
class Credentials:
    storage_url: str  # e.g. http://127.0.0.1:16080/v1/AUTH_test
    token: str

    def __repr__(self) -> str:  # never print a token
        return f"Credentials(storage_url={self.storage_url!r}, token=<hidden>)"


# Swift's defaults for what /info may leave out (swift/common/constraints.py, slo.py).
DEFAULT_MAX_FILE_SIZE = 5 * 1024 ** 3 + 2


@dataclass(frozen=True)
class Limits:
    """The target cluster's constraints that shape a segment plan."""

    max_file_size: int
    max_manifest_segments: int
    max_manifest_size: int
    min_segment_size: int


class ObjectKind(Enum):
    PLAIN = "plain"
    SLO = "slo"
    DLO = "dlo"


@dataclass(frozen=True)
class ObjectHead:
    size: int
    etag: str  # unquoted; the content MD5 only for a PLAIN object
    kind: ObjectKind
    dlo_prefix: str | None = None  # "container/prefix" of a DLO's segments
    metadata: Mapping[str, str] = field(default_factory=dict)  # X-Object-Meta-*, lower-case


@dataclass(frozen=True)
class ManifestSegment:
    path: str  # "/container/object"
    etag: str
    size_bytes: int
    range: str | None = None  # a byte range of the segment object, as stored by Swift
    sub_slo: bool = False  # the segment is itself an SLO
    inline_data: bool = False  # bytes stored in the manifest itself, not in a segment object


def txn_id(reply: Reply) -> str | None:
    return reply.header("X-Trans-Id") or reply.header("X-Openstack-Request-Id")


def raise_for_status(request: Request, reply: Reply, *expected: int) -> None:
    if reply.status in expected:
        return
    detail = reply.body[:200].decode("utf-8", "replace").strip() if reply.body else ""
    raise RemoteError(SERVICE, request.method, request.path, reply.status, txn_id(reply), detail)


# Segments that every URL normaliser (yarl, urllib3, a proxy) would resolve away: written as
# percent-escapes they reach Swift, which unquotes the path, as the literal names they are.
_DOT_SEGMENTS = {".": "%2E", "..": "%2E%2E"}


def account_of(storage_url: str) -> str:
    """The account of a storage URL (…/v1/AUTH_<project> -> AUTH_<project>)."""
    return storage_url.rstrip("/").rsplit("/", 1)[-1]


def quote_segment(segment: str) -> str:
    """One path segment, percent-encoded so that nothing on the way can read it as another
    (a `/`, a `.` or `..` segment, a `%` escape)."""
    quoted = quote(segment, safe="")
    return _DOT_SEGMENTS.get(quoted, quoted)


def object_url(storage_url: str, container: str, obj: str | None = None) -> str:
    """The URL of exactly this container (and object): every `/`-separated part of the names
    is quoted on its own, so `dir/../x`, `.`, `a//b` and `x/` each address the object of that
    very name. The transport sends the URL as written (see xfer.proto.http.Request)."""
    url = storage_url.rstrip("/") + "/" + quote_segment(container)
    if obj is not None:
        url += "/" + "/".join(quote_segment(segment) for segment in obj.split("/"))
    return url


def _auth_headers(creds: Credentials, extra: dict[str, str] | None = None) -> dict[str, str]:
    headers = {"X-Auth-Token": creds.token}
    if extra:
        headers.update(extra)
    return headers


# --- authentication (v1 / tempauth) -------------------------------------------------------

def auth_v1_request(auth_url: str, user: str, key: str) -> Request:
    return Request("GET", auth_url, {"X-Auth-User": user, "X-Auth-Key": key})


def parse_auth_v1(request: Request, reply: Reply) -> Credentials:
    if reply.status in (401, 403):
        raise AuthError(SERVICE, request.method, request.path, reply.status, txn_id(reply),
                        "credentials refused")
    raise_for_status(request, reply, 200, 204)
    storage_url = reply.header("X-Storage-Url")
    token = reply.header("X-Auth-Token") or reply.header("X-Storage-Token")
    if not storage_url or not token:
        raise RemoteError(SERVICE, request.method, request.path, reply.status, txn_id(reply),
                          "auth reply lacks X-Storage-Url or X-Auth-Token")
    return Credentials(storage_url, token)


# --- /info ----------------------------------------------------------------------------------

def info_request(storage_url: str) -> Request:
    parts = urlsplit(storage_url)
    return Request("GET", urlunsplit((parts.scheme, parts.netloc, "/info", "", "")))


def parse_info(request: Request, reply: Reply) -> Limits:
    raise_for_status(request, reply, 200)
    info = json.loads(reply.body)
    swift, slo = info.get("swift", {}), info.get("slo")
    if slo is None:
        raise RemoteError(SERVICE, request.method, request.path, reply.status, txn_id(reply),
                          "static large objects (slo) are not enabled on this cluster")
    return Limits(
        max_file_size=int(swift.get("max_file_size", DEFAULT_MAX_FILE_SIZE)),
        max_manifest_segments=int(slo.get("max_manifest_segments", 1000)),
        max_manifest_size=int(slo.get("max_manifest_size", 8388608)),
        min_segment_size=int(slo.get("min_segment_size", 1)),
    )


# --- objects --------------------------------------------------------------------------------

def head_object_request(creds: Credentials, container: str, obj: str) -> Request:
    return Request("HEAD", object_url(creds.storage_url, container, obj), _auth_headers(creds))


def unquote_etag(value: str | None) -> str:
    return (value or "").strip().strip('"')


def parse_object_head(request: Request, reply: Reply) -> ObjectHead:
    raise_for_status(request, reply, 200)
    size = int(reply.header("Content-Length") or 0)
    etag = unquote_etag(reply.header("Etag"))
    prefix = "x-object-meta-"
    metadata = {k.lower()[len(prefix):]: v for k, v in reply.headers.items()
                if k.lower().startswith(prefix)}
    if (reply.header("X-Static-Large-Object") or "").lower() == "true":
        return ObjectHead(size, etag, ObjectKind.SLO, metadata=metadata)
    manifest = reply.header("X-Object-Manifest")
    if manifest:
        return ObjectHead(size, etag, ObjectKind.DLO, dlo_prefix=manifest, metadata=metadata)
    return ObjectHead(size, etag, ObjectKind.PLAIN, metadata=metadata)


def get_range_request(creds: Credentials, container: str, obj: str, start: int, length: int,
                      if_match: str | None = None) -> Request:
    """Ranged GET of [start, start + length); length must be positive. With `if_match` (the
    ETag a HEAD reported: Swift honours it for plain objects, SLOs and DLOs alike) Swift
    answers 412 instead of bytes of another version."""
    end = start + length - 1
    headers = {"Range": f"bytes={start}-{end}"}
    if if_match is not None:
        headers["If-Match"] = f'"{if_match}"'
    return Request("GET", object_url(creds.storage_url, container, obj),
                   _auth_headers(creds, headers))


_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def check_ranged_reply(request: Request, reply: Reply, start: int, length: int,
                       object_size: int) -> None:
    """A ranged GET must answer 206 with exactly the range asked (or 200 for the whole object)."""
    if reply.status == 200 and start == 0 and length == object_size:
        return
    if reply.status == 412 and request.headers.get("If-Match"):
        raise SourceChanged(f"{request.method} {request.path}: the object no longer has ETag "
                            f"{request.headers['If-Match']} [txn {txn_id(reply)}]")
    if reply.status == 409:  # Swift's SLO GET: a segment no longer matches its manifest
        raise SegmentMismatch(f"{request.method} {request.path}: a segment of the large object "
                            f"no longer matches its manifest [txn {txn_id(reply)}]")
    raise_for_status(request, reply, 206)
    content_range = reply.header("Content-Range") or ""
    match = _CONTENT_RANGE.match(content_range.strip())
    want_end = start + length - 1
    if not match or int(match[1]) != start or int(match[2]) != want_end:
        raise IntegrityError(
            f"{request.method} {request.path}: asked bytes {start}-{want_end}, "
            f"got Content-Range {content_range!r} [txn {txn_id(reply)}]")
    if match[3] != "*" and int(match[3]) != object_size:
        raise SourceChanged(
            f"{request.method} {request.path}: object size changed from {object_size} "
            f"to {match[3]} during the copy [txn {txn_id(reply)}]")


def _metadata_headers(metadata: Mapping[str, str] | None) -> dict[str, str]:
    return {f"X-Object-Meta-{name}": value for name, value in (metadata or {}).items()}


def put_object_request(creds: Credentials, container: str, obj: str,
                       body: bytes | bytearray | memoryview, etag: str,
                       metadata: Mapping[str, str] | None = None) -> Request:
    """A PUT of a body held in memory: the streamed PUT's request, with the body in it."""
    return replace(put_stream_request(creds, container, obj, len(body), etag, metadata),
                   body=body)


def check_put_reply(request: Request, reply: Reply, etag: str) -> None:
    _stored_etag(request, reply, etag, required=False)


def put_stream_request(creds: Credentials, container: str, obj: str, length: int,
                       etag: str | None, metadata: Mapping[str, str] | None = None) -> Request:
    """A PUT whose body the transport streams (`length` bytes). With `etag` Swift checks the
    body's MD5 itself (422 when it differs); without, the caller compares what Swift returns."""
    fields = {"Content-Length": str(length), "Content-Type": "application/octet-stream",
              **_metadata_headers(metadata)}
    if etag is not None:
        fields["ETag"] = etag
    return Request("PUT", object_url(creds.storage_url, container, obj),
                   _auth_headers(creds, fields))


def parse_stream_put_reply(request: Request, reply: Reply, etag: str | None) -> str:
    """The ETag Swift stored (the MD5 of what it received)."""
    stored = _stored_etag(request, reply, etag, required=True)
    assert stored is not None
    return stored


def _stored_etag(request: Request, reply: Reply, etag: str | None,
                 required: bool) -> str | None:
    """Check a PUT's reply against the ETag it declared (if any); the ETag Swift stored.
    `required`: a reply without one is an error (the caller has nothing else to check)."""
    if reply.status == 422:
        raise BodyRejected(
            f"{request.method} {request.path}: Swift computed a different MD5 than {etag} "
            f"(the bytes were damaged on the way) [txn {txn_id(reply)}]")
    raise_for_status(request, reply, 201)
    returned = unquote_etag(reply.header("Etag"))
    if (required and not returned) or (returned and etag is not None and returned != etag):
        raise IntegrityError(f"{request.method} {request.path}: Swift stored ETag "
                             f"{returned or 'none'}, expected {etag} [txn {txn_id(reply)}]")
    return returned


def put_container_request(creds: Credentials, container: str) -> Request:
    return Request("PUT", object_url(creds.storage_url, container), _auth_headers(creds))


def check_put_container_reply(request: Request, reply: Reply) -> None:
    raise_for_status(request, reply, 201, 202)


def delete_object_request(creds: Credentials, container: str, obj: str) -> Request:
    return Request("DELETE", object_url(creds.storage_url, container, obj), _auth_headers(creds))


def delete_container_request(creds: Credentials, container: str) -> Request:
    return Request("DELETE", object_url(creds.storage_url, container), _auth_headers(creds))


def check_delete_container_reply(request: Request, reply: Reply) -> bool:
    """True when deleted, False when it was already gone; a container that still holds
    objects is a RemoteError (409)."""
    raise_for_status(request, reply, 204, 404)
    return reply.status == 204


def check_delete_reply(request: Request, reply: Reply) -> bool:
    """True when something was deleted, False when it was already gone."""
    raise_for_status(request, reply, 204, 200, 404)
    return reply.status != 404


# --- static large objects -------------------------------------------------------------------

def slo_etag(segment_etags: Iterable[str]) -> str:
    """An SLO's ETag: the MD5 of its segments' MD5 hex strings, concatenated."""
    digest = hashlib.md5(usedforsecurity=False)
    for etag in segment_etags:
        digest.update(etag.encode("ascii"))
    return digest.hexdigest()


def put_manifest_request(creds: Credentials, container: str, obj: str,
                         segments: Sequence[ManifestSegment],
                         metadata: Mapping[str, str] | None = None) -> Request:
    body = json.dumps([
        {"path": s.path, "etag": s.etag, "size_bytes": s.size_bytes} for s in segments
    ]).encode()
    headers = _auth_headers(creds, {
        # Swift checks the manifest's ETag header against the SLO ETag it computes (422).
        "ETag": slo_etag(s.etag for s in segments),
        "Accept": "application/json",
        "Content-Type": "application/octet-stream",
        **_metadata_headers(metadata),
    })
    return Request("PUT", object_url(creds.storage_url, container, obj), headers,
                   {"multipart-manifest": "put", "heartbeat": "on"}, body)


def _heartbeat_result(request: Request, reply: Reply) -> tuple[int, dict[str, object]]:
    """With heartbeat=on Swift answers 202 at once; the real status is in the JSON body."""
    if reply.status != 202:
        raise_for_status(request, reply, 200, 201)
        return reply.status, {}
    try:
        result = json.loads(reply.body.strip() or b"{}")
        status = int(str(result["Response Status"]).split()[0])
    except (ValueError, KeyError) as exc:
        raise RemoteError(SERVICE, request.method, request.path, reply.status, txn_id(reply),
                          f"unreadable heartbeat body: {exc}") from exc
    return status, result


def parse_manifest_put_reply(request: Request, reply: Reply) -> str:
    """Returns the stored SLO's ETag (unquoted)."""
    status, result = _heartbeat_result(request, reply)
    if status == 422:
        raise IntegrityError(f"{request.method} {request.path}: manifest ETag mismatch "
                             f"[txn {txn_id(reply)}]", retryable=False)
    if status // 100 != 2:
        detail = f"{result.get('Response Body', '')} {result.get('Errors', '')}".strip()
        raise RemoteError(SERVICE, request.method, request.path, status, txn_id(reply), detail)
    return unquote_etag(str(result.get("Etag") or reply.header("Etag") or ""))


def delete_manifest_request(creds: Credentials, container: str, obj: str) -> Request:
    return Request("DELETE", object_url(creds.storage_url, container, obj),
                   _auth_headers(creds, {"Accept": "application/json"}),
                   {"multipart-manifest": "delete"})


def parse_manifest_delete_reply(request: Request, reply: Reply) -> bool:
    """True when the manifest existed. Segment deletions that failed are an error."""
    if reply.status == 404:
        return False
    raise_for_status(request, reply, 200, 204)
    if not reply.body.strip():
        return True
    result = json.loads(reply.body)
    status = int(str(result.get("Response Status", "200")).split()[0])
    if status == 404 or (status // 100 == 2 and not result.get("Number Deleted")):
        return False
    if status // 100 != 2 or result.get("Errors"):
        raise RemoteError(SERVICE, request.method, request.path, status, txn_id(reply),
                          f"segments not deleted: {result.get('Errors')}")
    return True


def manifest_get_request(creds: Credentials, container: str, obj: str) -> Request:
    """The stored manifest of an SLO (the stored form: it says which segments are sub-SLOs)."""
    return Request("GET", object_url(creds.storage_url, container, obj), _auth_headers(creds),
                   {"multipart-manifest": "get"})


def parse_manifest(request: Request, reply: Reply) -> list[ManifestSegment]:
    raise_for_status(request, reply, 200)
    entries = json.loads(reply.body)
    return [
        ManifestSegment("", "", 0, inline_data=True) if "data" in e else
        ManifestSegment(e.get("path") or e["name"], e.get("etag") or e["hash"],
                        int(e.get("size_bytes", e.get("bytes", 0))), e.get("range"),
                        bool(e.get("sub_slo")))
        for e in entries
    ]


# --- container listings ---------------------------------------------------------------------

@dataclass(frozen=True)
class Listed:
    name: str
    bytes: int
    hash: str
    last_modified: str = ""  # ISO 8601, UTC, as Swift lists it ("2026-12-07T15:04:05.123456")


def list_objects_request(creds: Credentials, container: str, prefix: str = "",
                         marker: str = "") -> Request:
    params = {"format": "json"}
    if prefix:
        params["prefix"] = prefix
    if marker:
        params["marker"] = marker
    return Request("GET", object_url(creds.storage_url, container), _auth_headers(creds), params)


def parse_listing(request: Request, reply: Reply) -> list[Listed]:
    """One page of a listing; an absent container lists as empty."""
    if reply.status == 404:
        return []
    raise_for_status(request, reply, 200, 204)
    if reply.status == 204 or not reply.body.strip():
        return []
    return [Listed(e["name"], int(e["bytes"]), e["hash"], e.get("last_modified", ""))
            for e in json.loads(reply.body)]


def list_containers_request(creds: Credentials, marker: str = "") -> Request:
    params = {"format": "json"}
    if marker:
        params["marker"] = marker
    return Request("GET", creds.storage_url.rstrip("/"), _auth_headers(creds), params)


def parse_container_listing(request: Request, reply: Reply) -> list[str]:
    """One page of an account's container names."""
    raise_for_status(request, reply, 200, 204)
    if reply.status == 204 or not reply.body.strip():
        return []
    return [str(entry["name"]) for entry in json.loads(reply.body)]
