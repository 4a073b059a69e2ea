"""Glance image API v2, sans IO: images (show, create, delete, list), API 2.17 locations,
an image's tasks; what a copy's record carries over (`propagated_body`); where an image's
bytes are in Swift (`swift_location`, `location_url`).

Every request asks for JSON (`Accept: application/json`): Glance's errors then come as
{"message": ...} instead of an HTML page, and `glance_message` gives the sentence.
Replies as measured on this cloud's Glance 33: an image another project may not see is 404
(not 403); a reader creating an image, a reserved `os_glance_*` property or `visibility:
public` for a member are 403; a property or tag limit is 413; a schema violation and 4-byte
UTF-8 are 400; add-location of a `queued` image answers 202 and runs a `location_import` task,
whose failure ("Task failed due to Internal Error") returns the image to `queued`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, NamedTuple
from urllib.parse import parse_qs, quote, urlsplit

from xfer.errors import (
    AuthError,
    ImageNotActive,
    ImageNotFound,
    ImageRejected,
    IntegrityError,
    QuotaExceeded,
    RegistrationFailed,
    RemoteError,
    TargetForbidden,
    UnsupportedStore,
)
from xfer.proto.http import Reply, Request

SERVICE = "glance"
LOCATIONS_API_VERSION = "image 2.17"


@dataclass(frozen=True)
class Image:
    id: str
    name: str | None
    status: str
    owner: str
    visibility: str
    checksum: str | None  # MD5 hex
    os_hash_algo: str | None
    os_hash_value: str | None
    size: int | None
    disk_format: str | None
    container_format: str | None
    min_disk: int
    min_ram: int
    protected: bool
    tags: tuple[str, ...]
    direct_url: str | None  # with show_image_direct_url; hidden while deactivated
    stores: str | None  # multi-store deployments only
    created_at: str
    properties: Mapping[str, Any]  # every other key: os_*, hw_*, custom, os_glance_*
    virtual_size: int | None = None
    updated_at: str | None = None


@dataclass(frozen=True)
class SwiftLocation:
    storage_url: str  # http://HOST:PORT/v1/AUTH_<project>
    container: str  # names exactly as Swift stores them (not percent-encoded)
    object: str


class ImageTask(NamedTuple):
    status: str  # pending, processing, success, failure
    message: str
    id: str = ""
    updated_at: str = ""  # what moves while Glance works on it (ISO 8601)


# Glance's own fields that are neither an Image field nor a property.
_GLANCE_FIELDS = frozenset({"virtual_size", "updated_at", "self", "file", "schema", "locations"})
_IMAGE_FIELDS = frozenset({
    "id", "name", "status", "owner", "visibility", "checksum", "os_hash_algo", "os_hash_value",
    "size", "disk_format", "container_format", "min_disk", "min_ram", "protected", "tags",
    "direct_url", "stores", "created_at"})


# --- replies --------------------------------------------------------------------------------

def glance_message(reply: Reply) -> str:
    """Glance's sentence from an error reply: the JSON `message` without the `<br />` webob
    appends, or the text of an HTML page."""
    text = reply.body[:2000].decode("utf-8", "replace")
    try:
        text = str(json.loads(text).get("message", text))
    except (ValueError, AttributeError):
        pass
    text = re.sub(r"<[^>]*>", " ", text)
    return " ".join(text.replace("&#x27;", "'").replace("&quot;", '"').split())[:300]


def request_id(reply: Reply) -> str | None:
    return reply.header("X-Openstack-Request-Id")


def raise_for_status(request: Request, reply: Reply, *expected: int) -> None:
    if reply.status in expected:
        return
    cls = AuthError if reply.status == 401 else RemoteError
    raise cls(SERVICE, request.method, request.path, reply.status, request_id(reply),
              glance_message(reply))


def _where(request: Request) -> str:
    parts = urlsplit(request.url)
    return f"Glance at {parts.scheme}://{parts.netloc}"


def _headers(token: str, **extra: str) -> dict[str, str]:
    return {"X-Auth-Token": token, "Accept": "application/json", **extra}


def _images_url(image_url: str, *parts: str) -> str:
    return "/".join([image_url.rstrip("/") + "/v2/images", *(quote(p, safe="") for p in parts)])


def image_from(document: Mapping[str, Any]) -> Image:
    """An Image from Glance's JSON record."""
    def optional_int(name: str) -> int | None:
        value = document.get(name)
        return None if value is None else int(value)

    return Image(
        id=str(document["id"]), name=document.get("name"), status=str(document["status"]),
        owner=str(document.get("owner") or ""), visibility=str(document.get("visibility", "")),
        checksum=document.get("checksum"), os_hash_algo=document.get("os_hash_algo"),
        os_hash_value=document.get("os_hash_value"), size=optional_int("size"),
        disk_format=document.get("disk_format"),
        container_format=document.get("container_format"),
        min_disk=int(document.get("min_disk") or 0), min_ram=int(document.get("min_ram") or 0),
        protected=bool(document.get("protected", False)),
        tags=tuple(document.get("tags") or ()), direct_url=document.get("direct_url"),
        stores=document.get("stores"), created_at=str(document.get("created_at", "")),
        properties={key: value for key, value in document.items()
                    if key not in _IMAGE_FIELDS and key not in _GLANCE_FIELDS},
        virtual_size=optional_int("virtual_size"), updated_at=document.get("updated_at"),
    )


def _image_of(request: Request, reply: Reply) -> Image:
    try:
        return image_from(json.loads(reply.body))
    except (ValueError, KeyError, TypeError) as exc:
        raise RemoteError(SERVICE, request.method, request.path, reply.status, request_id(reply),
                          f"unreadable image record: {exc!r}") from exc


# --- images ---------------------------------------------------------------------------------

def image_request(image_url: str, token: str, image_id: str) -> Request:
    return Request("GET", _images_url(image_url, image_id), _headers(token))


def file_range_request(image_url: str, token: str, image_id: str, start: int,
                       length: int) -> Request:
    """GET /v2/images/{id}/file for bytes [start, start + length): Glance honours Range."""
    return Request("GET", _images_url(image_url, image_id) + "/file",
                   {"X-Auth-Token": token, "Range": f"bytes={start}-{start + length - 1}"})


def empty_upload_request(image_url: str, token: str, image_id: str) -> Request:
    """PUT /v2/images/{id}/file with no bytes: how an empty image gets its data (Glance
    refuses a location whose object has 0 bytes, glance/location.py _check_location_uri)."""
    return Request("PUT", _images_url(image_url, image_id) + "/file",
                   {"X-Auth-Token": token, "Content-Type": "application/octet-stream"},
                   body=b"")


def check_uploaded(request: Request, reply: Reply) -> None:
    raise_for_status(request, reply, 204)


def check_file_range_reply(request: Request, reply: Reply, start: int, length: int,
                           image_size: int) -> None:
    """206 with exactly the range asked (or 200 for the whole image); a 404 or 403 is the
    image gone or hidden now, an IntegrityError any other range."""
    if reply.status == 200 and start == 0 and length == image_size:
        return
    if reply.status in (403, 404):
        raise ImageNotFound(request.path)
    raise_for_status(request, reply, 206)
    content_range = (reply.header("Content-Range") or "").strip()
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", content_range)
    if not match or (int(match[1]), int(match[2])) != (start, start + length - 1) or (
            match[3] != "*" and int(match[3]) != image_size):
        raise IntegrityError(f"{request.method} {request.path}: asked bytes {start}-"
                             f"{start + length - 1} of {image_size}, got Content-Range "
                             f"{content_range!r}")


def parse_image(request: Request, reply: Reply) -> Image:
    """404, and 403, are ImageNotFound: Glance does not tell "absent" from "not yours"."""
    if reply.status in (403, 404):
        image_id = request.path.rsplit("/", 1)[-1]
        raise ImageNotFound(f"image {image_id} not found in {_where(request)}, or not visible "
                            f"to the user ({reply.status}: {glance_message(reply)})")
    raise_for_status(request, reply, 200)
    return _image_of(request, reply)


def require_active(image: Image, where: str) -> Image:
    """The source of a copy must be active: only then does it have bytes and checksums."""
    if image.status != "active":
        raise ImageNotActive(f"source image {image.id} in {where} is {image.status}, not "
                             f"active: only an active image has data to copy")
    return image


def create_image_request(image_url: str, token: str, body: Mapping[str, Any]) -> Request:
    return Request("POST", _images_url(image_url), _headers(
        token, **{"Content-Type": "application/json"}), body=json.dumps(dict(body)).encode())


def parse_created_image(request: Request, reply: Reply) -> Image:
    if reply.status == 403:
        raise TargetForbidden(f"{_where(request)} refused to create the image for the user "
                              f"(403: {glance_message(reply)})")
    if reply.status == 413:
        raise QuotaExceeded(f"{_where(request)} refused the image: a quota or limit is reached "
                            f"(413: {glance_message(reply)})")
    if reply.status == 400:
        raise ImageRejected(f"{_where(request)} refused the image record "
                            f"(400: {glance_message(reply)})")
    raise_for_status(request, reply, 201)
    return _image_of(request, reply)


def delete_image_request(image_url: str, token: str, image_id: str) -> Request:
    return Request("DELETE", _images_url(image_url, image_id), _headers(token))


def parse_deleted(request: Request, reply: Reply) -> bool:
    """True when deleted, False when it was already gone."""
    if reply.status == 403:
        raise TargetForbidden(f"{_where(request)} refused to delete {request.path} "
                              f"(403: {glance_message(reply)})")
    raise_for_status(request, reply, 204, 404)
    return reply.status == 204


def list_images_request(image_url: str, token: str, *, checksum: str | None = None,
                        os_hash_value: str | None = None, status: str | None = "active",
                        owner: str | None = None, hidden: bool = False,
                        marker: str | None = None, limit: int | None = None) -> Request:
    """One page of the images the user can see, oldest first (Glance breaks ties by id);
    `hidden`: only those hidden from listings (`os_hidden`), which Glance lists only when
    asked so; `owner`: only that project's."""
    params = {"sort_key": "created_at", "sort_dir": "asc"}
    for name, value in (("checksum", checksum), ("os_hash_value", os_hash_value),
                        ("status", status), ("owner", owner),
                        ("os_hidden", "true" if hidden else None), ("marker", marker),
                        ("limit", None if limit is None else str(limit))):
        if value is not None:
            params[name] = value
    return Request("GET", _images_url(image_url), _headers(token), params)


def parse_images(request: Request, reply: Reply) -> tuple[list[Image], str | None]:
    """A page of images and the marker of the next page (None on the last)."""
    raise_for_status(request, reply, 200)
    try:
        document = json.loads(reply.body)
        images = [image_from(record) for record in document["images"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise RemoteError(SERVICE, request.method, request.path, reply.status, request_id(reply),
                          f"unreadable image list: {exc!r}") from exc
    following = parse_qs(urlsplit(document.get("next") or "").query).get("marker")
    return images, (following[0] if following and images else None)


# --- locations (API 2.17) and tasks ---------------------------------------------------------

def add_location_request(image_url: str, token: str, service_token: str, image_id: str,
                         url: str, os_hash_algo: str, os_hash_value: str) -> Request:
    """Register bytes already in the store as the data of a `queued` image. The service token
    (a user with the `service` role) is what lets a non-http location through Glance's policy;
    Glance re-reads the object and checks the hash before the image turns active."""
    body = {"url": url, "validation_data": {"os_hash_algo": os_hash_algo,
                                            "os_hash_value": os_hash_value}}
    return Request("POST", _images_url(image_url, image_id, "locations"), _headers(
        token, **{"X-Service-Token": service_token, "Content-Type": "application/json",
                  "OpenStack-API-Version": LOCATIONS_API_VERSION}),
        body=json.dumps(body).encode())


def parse_location_added(request: Request, reply: Reply) -> None:
    if reply.status == 403:
        raise TargetForbidden(f"{_where(request)} refused to register the copy's location "
                              f"(403: {glance_message(reply)}); it needs the user's token and "
                              f"a service token of a user with the service role")
    if reply.status == 413:
        raise QuotaExceeded(f"{_where(request)} refused the copy's data: a quota is reached "
                            f"(413: {glance_message(reply)})")
    if reply.status in (400, 404, 409):
        raise RegistrationFailed(f"{_where(request)} did not accept the copy's location "
                                 f"({reply.status}: {glance_message(reply)})")
    raise_for_status(request, reply, 202)


def image_tasks_request(image_url: str, token: str, image_id: str) -> Request:
    return Request("GET", _images_url(image_url, image_id, "tasks"), _headers(token))


def parse_image_tasks(request: Request, reply: Reply) -> list[ImageTask]:
    """The image's tasks, oldest first: the last location_import says why an image that was
    given a location is `queued` again."""
    raise_for_status(request, reply, 200)
    try:
        tasks = sorted(json.loads(reply.body)["tasks"], key=lambda t: str(t.get("created_at")))
        return [ImageTask(str(t["status"]), str(t.get("message") or ""), str(t.get("id", "")),
                          str(t.get("updated_at") or "")) for t in tasks]
    except (ValueError, KeyError, TypeError) as exc:
        raise RemoteError(SERVICE, request.method, request.path, reply.status, request_id(reply),
                          f"unreadable task list: {exc!r}") from exc


# --- the copy's record ----------------------------------------------------------------------

# Never carried over: what Glance computes or assigns itself, and where the source's bytes are.
NEVER_COPIED = frozenset({
    "id", "owner", "status", "locations", "direct_url", "checksum", "os_hash_algo",
    "os_hash_value", "size", "virtual_size", "created_at", "updated_at", "file", "schema",
    "self", "stores"})
# Glance's reserved namespace: it refuses these on create (403), whatever `deny` says.
RESERVED_PREFIX = "os_glance_"
DEFAULT_ALLOW = ("*",)
DEFAULT_DENY = ("os_glance_*",)
# Visibilities a member may set on an image of its own; 'public' needs publicize_image (admin).
COPIED_VISIBILITIES = frozenset({"private", "shared", "community"})
_NO_EXTRA: Mapping[str, str] = {}
_FOUR_BYTE_UTF8 = re.compile("[\U00010000-\U0010ffff]")


def propagated_body(image: Image, *, allow: Sequence[str] = DEFAULT_ALLOW,
                    deny: Sequence[str] = DEFAULT_DENY, name: str | None = None,
                    extra: Mapping[str, str] = _NO_EXTRA, source_region: str) -> dict[str, Any]:
    """The create body of the copy of `image`, with its properties carried over once.

    Kept: the name (or `name`), disk and container format, min_disk, min_ram, tags, and every
    property (os_*, hw_*, custom) whose name matches a pattern of `allow` and none of `deny`
    (fnmatch, case-sensitive). `protected` is False (a copy must stay deletable by xfer until
    it verified). The visibility is kept when private, shared or community; a public source
    becomes a private copy: a member may not publicize an image (Glance answers 403), and a
    copy shared wider than asked would be worse than one shared less.
    Never kept: NEVER_COPIED and os_glance_* (Glance's reserved namespace, refused on create).
    Then the provenance, overriding inherited values: `source_region`, `source_image_id`; then
    `extra`, last.
    Glance refuses 4-byte UTF-8 (emoji) in names, tags and properties with a bare 400 after
    the job waited for it; here it is ImageRejected naming the field, before any request.
    """
    body: dict[str, Any] = {}
    if (name if name is not None else image.name) is not None:
        body["name"] = name if name is not None else image.name
    for field_name in ("disk_format", "container_format"):
        if getattr(image, field_name) is not None:
            body[field_name] = getattr(image, field_name)
    body.update(min_disk=image.min_disk, min_ram=image.min_ram, tags=list(image.tags),
                protected=False,
                visibility=image.visibility if image.visibility in COPIED_VISIBILITIES
                else "private")
    for key, value in image.properties.items():
        if (key not in NEVER_COPIED and key not in body and not key.startswith(RESERVED_PREFIX)
                and any(fnmatchcase(key, pattern) for pattern in allow)
                and not any(fnmatchcase(key, pattern) for pattern in deny)):
            body[key] = value
    body.update(source_region=source_region, source_image_id=image.id)
    body.update(extra)
    check_glance_text(body)
    return body


def glance_text_problem(value: str) -> str | None:
    """Why Glance would refuse this text (4-byte UTF-8), or None."""
    found = _FOUR_BYTE_UTF8.search(value)
    if found is None:
        return None
    return (f"holds {found.group()!r} (U+{ord(found.group()):X}), a character of 4 bytes in "
            f"UTF-8, which Glance refuses in names, tags and properties")


def check_glance_text(body: Mapping[str, Any]) -> None:
    """ImageRejected naming the first key, value or tag that Glance would refuse."""
    for key, value in body.items():
        texts = [("property name " + repr(key), key)]
        if isinstance(value, str):
            texts.append((repr(key), value))
        elif key == "tags":
            texts += [(f"tag {tag!r}", tag) for tag in value if isinstance(tag, str)]
        for what, text in texts:
            problem = glance_text_problem(text)
            if problem:
                raise ImageRejected(f"the copy's {what} {problem}")


# --- where the bytes are --------------------------------------------------------------------

_UNLOCATABLE = re.compile("[/?#\x00-\x1f\x7f]")
_SWIFT_SCHEMES = {"swift+http": "http", "swift+https": "https"}
_STORE_NAMES = {
    "swift+config": "a single-tenant Swift store (swift+config://, credentials from Glance's "
                    "own config)",
    "swift": "a single-tenant Swift store with credentials in the URL (swift://)",
    "file": "Glance's file store (file://, on the Glance host's disk)",
    "filesystem": "Glance's file store",
    "rbd": "a Ceph RBD store (rbd://)",
    "cinder": "a Cinder volume store (cinder://)",
    "http": "the web (an http:// location, read-only)",
    "https": "the web (an https:// location, read-only)",
    "s3": "an S3 store (s3://)",
    "vsphere": "a VMware datastore (vsphere://)",
}


def swift_location(image: Image, owner_storage_url: str) -> SwiftLocation:
    """Where the image's bytes are in Swift, readable with the user's (trust) token.

    From `direct_url` when Glance shows it: `swift+http(s)://HOST:PORT/v1/AUTH_x/<container>/
    <object>`, split as glance_store splits it (the last two path segments are the container
    and the object, everything before is the storage URL) and, like glance_store, taken
    exactly as written: glance_store never percent-decodes them (measured: a location ending
    in `/o%41` is read from the object named `o%41`, not `oA`). Any other store is
    UnsupportedStore. Without `direct_url`: the multi-tenant store's own convention,
    `<owner_storage_url>/glance_<id>/<id>`.
    """
    if image.direct_url is None:
        if image.stores and "swift" not in image.stores.split(","):
            raise UnsupportedStore(_unsupported(image, f"the store(s) {image.stores}"))
        if not owner_storage_url:
            raise UnsupportedStore(_unsupported(
                image, "a store Glance does not show (no direct_url), and the catalog has no "
                       "object store to look in"))
        return SwiftLocation(owner_storage_url.rstrip("/"), f"glance_{image.id}", image.id)
    url = image.direct_url
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in _SWIFT_SCHEMES:
        store = _STORE_NAMES.get(scheme, f"a store xfer does not know ({scheme or 'no'} scheme)")
        raise UnsupportedStore(_unsupported(image, store))
    parts = urlsplit(url)
    segments = parts.path.split("/")
    # "", the version ("v1"), the account, the container, the object: at least five
    if ("@" in parts.netloc or url.count("://") != 1 or len(segments) < 5
            or not all(segments[-3:]) or parts.query or parts.fragment):
        raise UnsupportedStore(_unsupported(
            image, "a Swift location that is not a multi-tenant store's "
                   "(credentials in the URL, or not .../AUTH_<project>/<container>/<object>)"))
    storage_url = f"{_SWIFT_SCHEMES[scheme]}://{parts.netloc}{'/'.join(segments[:-2])}"
    return SwiftLocation(storage_url, segments[-2], segments[-1])


def _unsupported(image: Image, store: str) -> str:
    return (f"image {image.id} is stored in {store}, which xfer cannot read with the user's "
            f"token; xfer copies images whose data is in a multi-tenant Swift store "
            f"(swift_store_multi_tenant = true: locations swift+http(s)://HOST/v1/AUTH_<project>"
            f"/glance_<id>/<id>)")


def location_url(location: SwiftLocation) -> str:
    """The location Glance's multi-tenant Swift store reads `location` from:
    `swift+http(s)://HOST:PORT/v1/AUTH_x/<container>/<object>`, names as they are (glance_store
    does not decode them; see swift_location). A name holding `/`, `?`, `#` or a control
    character (which URL parsers drop) has no such URL: glance_store would read another
    object, so it is a ValueError (a bug of the caller: xfer names a copy `glance_<id>/<id>`)."""
    for name in (location.container, location.object):
        if not name or _UNLOCATABLE.search(name):
            raise ValueError(f"{name!r} cannot be named in a Glance Swift location")
    return f"swift+{location.storage_url.rstrip('/')}/{location.container}/{location.object}"
