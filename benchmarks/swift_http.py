"""A small synchronous Swift client for the harness: PUT the sources, HEAD a copy, empty a
region between runs. Independent of xfer's own client, which is what is measured."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

TIMEOUT_S = 120.0


class SwiftHttpError(RuntimeError):
    pass


@dataclass(frozen=True)
class Session:
    storage_url: str  # http://127.0.0.1:PORT/v1/AUTH_test
    token: str

    def request(self, method: str, path: str,
                body: bytes | memoryview | Iterable[bytes] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(self.storage_url)
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=TIMEOUT_S)
        try:
            # an iterable body with a Content-Length header is streamed as it is, not chunked
            all_headers = {"X-Auth-Token": self.token, **(headers or {})}
            connection.request(method, parts.path + path, body=body, headers=all_headers)
            response = connection.getresponse()
            data = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, data
        finally:
            connection.close()

    def checked(self, method: str, path: str, expect: tuple[int, ...], **kwargs: object
                ) -> tuple[dict[str, str], bytes]:
        status, headers, data = self.request(method, path, **kwargs)  # type: ignore[arg-type]
        if status not in expect:
            raise SwiftHttpError(f"{method} {path}: {status} {data[:300]!r} "
                                 f"[txn {headers.get('x-trans-id')}]")
        return headers, data


def login(auth_url: str, user: str, key: str) -> Session:
    """tempauth v1. The storage URL is built from the Host we sent (checked by the caller when
    it matters: the shaping proxy)."""
    parts = urlsplit(auth_url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=TIMEOUT_S)
    try:
        connection.request("GET", parts.path, headers={"X-Auth-User": user, "X-Auth-Key": key})
        response = connection.getresponse()
        response.read()
        if response.status != 200:
            raise SwiftHttpError(f"login at {auth_url}: {response.status}")
        return Session(response.getheader("X-Storage-Url") or "",
                       response.getheader("X-Auth-Token") or "")
    finally:
        connection.close()


def object_path(container: str, obj: str) -> str:
    return f"/{quote(container)}/{quote(obj)}"


def large_object_kind(session: Session, container: str, name: str) -> tuple[str, int]:
    """("SLO" | "DLO" | "plain" | "missing", size) of an object, from its HEAD."""
    status, headers, _ = session.request("HEAD", object_path(container, name))
    if status == 404:
        return "missing", 0
    if status // 100 != 2:
        raise SwiftHttpError(f"HEAD {container}/{name}: {status}")
    size = int(headers.get("content-length", "0"))
    if headers.get("x-static-large-object", "").lower() == "true":
        return "SLO", size
    if "x-object-manifest" in headers:
        return "DLO", size
    return "plain", size


def _listing(session: Session, path: str) -> list[str]:
    names: list[str] = []
    while True:
        marker = f"&marker={quote(names[-1])}" if names else ""
        _, data = session.checked("GET", f"{path}?format=json{marker}", (200, 204))
        page = [entry["name"] for entry in json.loads(data or b"[]")]
        if not page:
            return names
        names.extend(page)


def empty_account(session: Session) -> int:
    """Delete every object and container of the account; returns how many objects went.
    Manifests are deleted as plain objects: their segments are listed objects too."""
    deleted = 0
    for container in _listing(session, ""):
        names = _listing(session, f"/{quote(container)}")
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in pool.map(lambda n, c=container: session.checked(
                    "DELETE", object_path(c, n), (204, 404)), names):
                deleted += 1
        session.checked("DELETE", f"/{quote(container)}", (204, 404, 409))
    return deleted
