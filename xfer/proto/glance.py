"""Glance image API v2, sans IO: images, their creation with propagated properties, API 2.17
locations, listing by content, and where an image's data is in Swift.

Every request carries a token (a trust-scoped one, acting as the user); adding a location
also carries xfer's own in X-Service-Token, since Glance lets only a service register data
that is already in a store.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

from xfer.errors import CopyFailed, ImageNotFound, RemoteError
from xfer.proto.http import Reply, Request

SERVICE = "glance"
JSON = {"Content-Type": "application/json", "Accept": "application/json"}
LOCATIONS_API = {"OpenStack-API-Version": "image 2.17"}
# Fields of an image record that are not properties.
CORE_FIELDS = frozenset({
    "id", "name", "status", "owner", "visibility", "checksum", "os_hash_algo",
    "os_hash_value", "size", "virtual_size", "disk_format", "container_format", "min_disk",
    "min_ram", "protected", "tags", "direct_url", "stores", "created_at", "updated_at",
    "locations", "file", "schema", "self", "os_hidden"})
# Never copied: Glance sets them per image, or they describe the source's own data.
NEVER_COPIED = frozenset({
    "id", "owner", "status", "locations", "direct_url", "checksum", "os_hash_algo",
    "os_hash_value", "size", "virtual_size", "created_at", "updated_at", "file", "schema",
    "self", "stores"})
# A member may set these visibilities on its own image; `public` needs an admin.
MEMBER_VISIBILITIES = frozenset({"private", "shared", "community"})
SWIFT_SCHEMES = {"swift+http": "http", "swift+https": "https"}


@dataclass(frozen=True)
class Image:
    id: str
    name: str | None
    status: str
    owner: str
    visibility: str
    checksum: str | None
    os_hash_algo: str | None
    os_hash_value: str | None
    size: int | None
    disk_format: str | None
    container_format: str | None
    min_disk: int
    min_ram: int
    protected: bool
    tags: tuple[str, ...]
    direct_url: str | None
    stores: str | None
    created_at: str
    os_hidden: bool = False
    properties: Mapping[str, Any] = field(default_factory=dict)  # every other key


@dataclass(frozen=True)
class SwiftLocation:
    storage_url: str  # http://HOST:PORT/v1/AUTH_<project>
    container: str
    object: str


def image_from(document: Mapping[str, Any]) -> Image:
    return Image(
        id=str(document["id"]), name=document.get("name"), status=str(document["status"]),
        owner=str(document.get("owner") or ""), visibility=str(document.get("visibility")),
        checksum=document.get("checksum"), os_hash_algo=document.get("os_hash_algo"),
        os_hash_value=document.get("os_hash_value"), size=document.get("size"),
        disk_format=document.get("disk_format"),
        container_format=document.get("container_format"),
        min_disk=int(document.get("min_disk") or 0), min_ram=int(document.get("min_ram") or 0),
        protected=bool(document.get("protected")), tags=tuple(document.get("tags") or ()),
        direct_url=document.get("direct_url"), stores=document.get("stores"),
        created_at=str(document.get("created_at") or ""),
        os_hidden=bool(document.get("os_hidden")),
        properties={k: v for k, v in document.items() if k not in CORE_FIELDS})


def _url(image_url: str, path: str, query: Mapping[str, str] | None = None) -> str:
    url = image_url.rstrip("/") + path
    return f"{url}?{urlencode(query)}" if query else url


def _headers(token: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {"X-Auth-Token": token, "Accept": "application/json", **(extra or {})}


def _message(reply: Reply) -> str:
    """Glance's own words (its error pages are HTML or JSON), short."""
    text = reply.body[:2000].decode("utf-8", "replace")
    try:
        document = json.loads(text)
        text = str(document.get("message") or document.get("title") or text)
    except (ValueError, AttributeError):
        pass
    return " ".join(text.replace("<br />", " ").split())[:300]


def raise_for_status(request: Request, reply: Reply, *expected: int) -> None:
    if reply.status in expected:
        return
    raise RemoteError(SERVICE, request.method, request.path, reply.status,
                      reply.header("X-Openstack-Request-Id"), _message(reply))


def _json(request: Request, reply: Reply) -> Any:
    try:
        return json.loads(reply.body)
    except ValueError:
        raise RemoteError(SERVICE, request.method, request.path, reply.status, None,
                          "the reply is not JSON") from None


def image_request(image_url: str, token: str, image_id: str) -> Request:
    return Request("GET", _url(image_url, f"/v2/images/{quote(image_id, safe='')}"),
                   _headers(token))


def parse_image(request: Request, reply: Reply) -> Image:
    """ImageNotFound for a 404, and for a 403 too: whether an image one may not see exists
    is not told."""
    if reply.status in (403, 404):
        raise ImageNotFound(request.path)
    raise_for_status(request, reply, 200)
    return image_from(_json(request, reply))


def create_image_request(image_url: str, token: str, body: Mapping[str, Any]) -> Request:
    return Request("POST", _url(image_url, "/v2/images"), {**_headers(token), **JSON},
                   body=json.dumps(body).encode())


def parse_created_image(request: Request, reply: Reply) -> Image:
    if reply.status == 403:
        raise CopyFailed("target_forbidden",
                         f"you may not create images in the target region's project "
                         f"({_message(reply)}); a member role on it is needed")
    if reply.status == 413:
        raise CopyFailed("target_quota_exceeded",
                         f"the target project is over its image quota ({_message(reply)}); "
                         f"delete images there or ask for a larger quota")
    if reply.status == 400:
        raise CopyFailed("target_refused_properties",
                         f"the target Glance refused the image's fields: {_message(reply)}")
    raise_for_status(request, reply, 201)
    return image_from(_json(request, reply))


def delete_image_request(image_url: str, token: str, image_id: str) -> Request:
    return Request("DELETE", _url(image_url, f"/v2/images/{quote(image_id, safe='')}"),
                   _headers(token))


def parse_deleted(request: Request, reply: Reply) -> bool:
    if reply.status == 404:
        return False
    raise_for_status(request, reply, 204)
    return True


def add_location_request(image_url: str, token: str, service_token: str, image_id: str,
                         url: str, os_hash_algo: str, os_hash_value: str) -> Request:
    body = {"url": url, "validation_data": {"os_hash_algo": os_hash_algo,
                                            "os_hash_value": os_hash_value}}
    return Request("POST", _url(image_url, f"/v2/images/{quote(image_id, safe='')}/locations"),
                   {**_headers(token), **JSON, **LOCATIONS_API, "X-Service-Token": service_token},
                   body=json.dumps(body).encode())


def parse_location_added(request: Request, reply: Reply) -> None:
    if reply.status in (400, 403, 409):
        raise CopyFailed("registration_failed",
                         f"the target Glance refused the copy's location ({reply.status}: "
                         f"{_message(reply)})")
    raise_for_status(request, reply, 202)


def list_images_request(image_url: str, token: str, *, checksum: str | None = None,
                        os_hash_value: str | None = None, status: str = "active",
                        marker: str | None = None, limit: int = 100) -> Request:
    query = {"status": status, "sort": "created_at:asc,id:asc", "limit": str(limit)}
    if checksum is not None:
        query["checksum"] = checksum
    if os_hash_value is not None:
        query["os_hash_value"] = os_hash_value
    if marker is not None:
        query["marker"] = marker
    return Request("GET", _url(image_url, "/v2/images", query), _headers(token))


def parse_image_list(request: Request, reply: Reply) -> tuple[list[Image], str | None]:
    """(the images of this page, the marker of the next page or None)."""
    raise_for_status(request, reply, 200)
    document = _json(request, reply)
    images = [image_from(entry) for entry in document.get("images", ())]
    return images, (images[-1].id if document.get("next") and images else None)


def image_tasks_request(image_url: str, token: str, image_id: str) -> Request:
    return Request("GET", _url(image_url, f"/v2/images/{quote(image_id, safe='')}/tasks"),
                   _headers(token))


def parse_image_tasks(request: Request, reply: Reply) -> list[tuple[str, str]]:
    """(status, message) of each task of an image, oldest first."""
    raise_for_status(request, reply, 200)
    tasks = _json(request, reply).get("tasks", ())
    ordered = sorted(tasks, key=lambda task: str(task.get("created_at", "")))
    return [(str(task.get("status")), str(task.get("message") or "")) for task in ordered]


def propagated_body(image: Image, *, allow: Sequence[str], deny: Sequence[str],
                    name: str | None, extra: Mapping[str, str], source_region: str
                    ) -> dict[str, Any]:
    """The create body of a copy of `image`: its fields and properties propagated once.

    Kept: name (or `name`), disk and container format, min_disk, min_ram, tags, visibility
    (`public` becomes `private`: a member may not publicize, and a copy of someone else's
    public image is the copier's own), os_hidden, every os_*, hw_* and custom property matching `allow`
    and no pattern of `deny`. Never: the fields of NEVER_COPIED, Glance's own os_glance_*
    (whatever `allow` says), `protected` (a protected copy could not be deleted by a failing
    copy's cleanup). Provenance: source_region and source_image_id. `extra` goes last.
    """
    body: dict[str, Any] = {
        "name": name if name is not None else image.name,
        "disk_format": image.disk_format, "container_format": image.container_format,
        "min_disk": image.min_disk, "min_ram": image.min_ram, "tags": list(image.tags),
        "visibility": image.visibility if image.visibility in MEMBER_VISIBILITIES
        else "private",
    }
    if image.os_hidden:
        body["os_hidden"] = True
    for key, value in image.properties.items():
        if key in NEVER_COPIED or key.startswith("os_glance"):
            continue
        if any(fnmatch.fnmatchcase(key, pattern) for pattern in deny):
            continue
        if any(fnmatch.fnmatchcase(key, pattern) for pattern in allow):
            body[key] = value
    body = {key: value for key, value in body.items() if value is not None}
    body["source_region"] = source_region
    body["source_image_id"] = image.id
    body.update(extra)
    return body


def swift_location(image: Image, owner_storage_url: str) -> SwiftLocation:
    """Where the image's data is in its region's Swift: from `direct_url` when Glance shows
    it, else by the multi-tenant store's convention (the owner's account, container
    `glance_<id>`, object `<id>`). CopyFailed `unsupported_store` for any other store."""
    url = image.direct_url
    if url is None:
        if image.stores and "swift" not in image.stores.split(","):
            raise _unsupported(image, f"store {image.stores}")
        if not owner_storage_url:
            raise _unsupported(image, "no direct_url and no object store in your catalog")
        return SwiftLocation(owner_storage_url.rstrip("/"), f"glance_{image.id}", image.id)
    parts = urlsplit(url)
    scheme = SWIFT_SCHEMES.get(parts.scheme)
    if scheme is None:
        kind = {"swift+config": "a single-tenant Swift store (swift+config://)",
                "file": "the file store", "rbd": "the RBD (Ceph) store",
                "cinder": "the Cinder store", "http": "the HTTP (web) store",
                "https": "the HTTP (web) store", "s3": "the S3 store",
                "s3+https": "the S3 store", "vsphere": "the VMware store"}.get(
                    parts.scheme, f"a {parts.scheme}:// store")
        raise _unsupported(image, kind)
    path = parts.path.split("/")
    # ['', 'v1', 'AUTH_<project>', container, object...]: the object name may hold '/'
    if len(path) < 5 or path[1] != "v1" or not path[2] or not path[3] or not path[4]:
        raise _unsupported(image, "a Swift location xfer cannot read")
    storage_url = f"{scheme}://{parts.netloc}/v1/{path[2]}"
    return SwiftLocation(storage_url, unquote(path[3]), unquote("/".join(path[4:])))


def _unsupported(image: Image, kind: str) -> CopyFailed:
    return CopyFailed("unsupported_store",
                      f"image {image.id} is in {kind}: xfer copies data from Swift to "
                      f"Swift, so it needs the image in a multi-tenant Swift store "
                      f"(swift+http(s):// locations); copy it with glance-download instead, "
                      f"or move it to Swift first")


def location_url(location: SwiftLocation) -> str:
    """The URL Glance's multi-tenant Swift store reads: swift+http(s)://HOST/v1/AUTH_x/c/o."""
    scheme, _, rest = location.storage_url.partition("://")
    return (f"swift+{scheme}://{rest.rstrip('/')}/{quote(location.container, safe='')}/"
            f"{quote(location.object, safe='/')}")
