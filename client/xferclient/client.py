"""The Python API of xfer over a keystoneauth1 session.

xfer runs in each region and is listed in the catalog as service type `image-transfer`; a
Client talks to the one of `region_name` (the copy's target region). Every call authenticates
with the session (re-authenticating when a token expires) and returns xfer's JSON as it is;
an error reply raises ApiError with xfer's code and sentence.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import requests
from keystoneauth1 import exceptions as ksa_exceptions
from keystoneauth1 import session as ksa_session

from xferclient.events import EventParser
from xferclient.exceptions import ApiError, ClientError

SERVICE_TYPE = "image-transfer"
TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})
# Glance's own id form; anything else given as an image is a name to look up.
IMAGE_ID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
# An events stream that breaks is opened again this many times in a row, waiting 1, 2, 4...
# (at most 8) seconds between: about a minute of xfer being unreachable before giving up.
STREAM_RECONNECTS = 8
STREAM_BACKOFF_MAX = 8.0
# A stream sends a keep-alive comment every 15 s; silence for longer means it is dead.
STREAM_READ_TIMEOUT = 45.0
STREAM_REOPEN_DELAY = 0.5


def _final(error: Exception) -> bool:
    """Whether opening the stream again cannot help: xfer refused it (a 5xx may pass)."""
    return isinstance(error, ApiError) and error.status < 500


def _path(*parts: str) -> str:
    return "/" + "/".join(quote(part, safe="") for part in parts)


class Client:
    def __init__(self, session: ksa_session.Session, region_name: str | None = None,
                 interface: str = "public", endpoint_override: str | None = None) -> None:
        self.session = session
        self.region_name = region_name
        self.interface = interface
        self._endpoint = endpoint_override.rstrip("/") if endpoint_override else None

    # -- endpoints -----------------------------------------------------------------------------

    def endpoint(self) -> str:
        """xfer's URL in the chosen region, from the catalog."""
        if self._endpoint is None:
            self._endpoint = self._catalog_url(SERVICE_TYPE, self.region_name)
        return self._endpoint

    def _catalog_url(self, service_type: str, region: str | None) -> str:
        try:
            url = self.session.get_endpoint(service_type=service_type, interface=self.interface,
                                            region_name=region)
        except ksa_exceptions.EndpointNotFound:
            url = None
        if not url:
            where = f"region {region}" if region else "any region"
            raise ClientError(f"your catalog has no {self.interface} {service_type} endpoint in "
                              f"{where} (choose the region with --os-region-name)")
        return str(url).rstrip("/")

    # -- requests ------------------------------------------------------------------------------

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(url, method, raise_exc=False, **kwargs)
        except ksa_exceptions.ConnectionError as exc:  # refused, timed out, reset
            raise ClientError(f"could not reach {url}: {exc}") from exc

    def _call(self, method: str, path: str, *, body: Any = None,
              params: Mapping[str, Any] | None = None,
              headers: Mapping[str, str] | None = None) -> Any:
        response = self._send(method, self.endpoint() + path, json=body,
                              params=dict(params or {}), headers=dict(headers or {}))
        try:
            document = response.json()
        except ValueError:
            document = None
        if response.status_code >= 400:
            raise ApiError.from_reply(response.status_code, document,
                                      response.headers.get("X-Request-Id"))
        return document

    # -- image copies --------------------------------------------------------------------------

    def copy_image(self, image_id: str, source_region: str, *, name: str | None = None,
                   properties: Mapping[str, str] | None = None, force: bool = False,
                   idempotency_key: str | None = None) -> dict[str, Any]:
        """POST /v1/images/{id}/copies: a copy into this client's region; the job."""
        body: dict[str, Any] = {"source_region": source_region}
        if name is not None:
            body["name"] = name
        if properties:
            body["properties"] = dict(properties)
        if force:
            body["force"] = True
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        job: dict[str, Any] = self._call("POST", _path("v1", "images", image_id, "copies"),
                                         body=body, headers=headers)
        return job

    def resolve_image(self, name_or_id: str, region: str) -> str:
        """An image id as given, or the id of the one image of that name the user sees in
        `region`'s Glance."""
        if IMAGE_ID.match(name_or_id):
            return name_or_id
        glance = re.sub(r"/v2/?$", "", self._catalog_url("image", region))
        response = self._send("GET", f"{glance}/v2/images",
                              params={"name": name_or_id, "limit": 2})
        if response.status_code != 200:
            raise ClientError(f"{region}'s Glance answered {response.status_code} to a search "
                              f"for the image named {name_or_id!r}")
        images = response.json().get("images", [])
        if not images:
            raise ClientError(f"no image named {name_or_id!r} in {region}")
        if len(images) > 1:
            raise ClientError(f"more than one image named {name_or_id!r} in {region}; "
                              f"give its id")
        return str(images[0]["id"])

    # -- jobs ----------------------------------------------------------------------------------

    def get_job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self._call("GET", _path("v1", "jobs", job_id))
        return job

    def list_jobs(self, *, state: str | None = None, region: str | None = None,
                  limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Newest first, following pages; at most `limit` jobs."""
        params: dict[str, Any] = {k: v for k, v in (("state", state), ("region", region))
                                  if v is not None}
        cursor, given = None, 0
        while limit is None or given < limit:
            page_size = 500 if limit is None else min(500, limit - given)
            page = self._call("GET", "/v1/jobs", params={
                **params, "limit": page_size, **({"cursor": cursor} if cursor else {})})
            for job in page["jobs"]:
                given += 1
                yield job
            cursor = page.get("next")
            if not cursor:
                return

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self._call("POST", _path("v1", "jobs", job_id, "cancel"))
        return job

    def follow(self, job_id: str) -> Iterator[dict[str, Any]]:
        """The job each time it changes, from its events stream, until it has ended. A stream
        that ends early (xfer's time limit, a restart) or breaks is opened again; ClientError
        after STREAM_RECONNECTS failures in a row."""
        failures = 0
        while True:
            try:
                for job in self._one_stream(job_id):
                    failures = 0
                    yield job
                    if job["state"] in TERMINAL_STATES:
                        return
                time.sleep(STREAM_REOPEN_DELAY)  # xfer ended it (time limit, shutdown)
            except (requests.RequestException, ClientError) as exc:
                if _final(exc) or failures >= STREAM_RECONNECTS:
                    raise
                failures += 1
                time.sleep(min(STREAM_BACKOFF_MAX, 2.0 ** (failures - 1)))

    def _one_stream(self, job_id: str) -> Iterator[dict[str, Any]]:
        url = self.endpoint() + _path("v1", "jobs", job_id, "events")
        # log=False: keystoneauth's debug log would read the body to print it.
        response = self._send("GET", url, stream=True, log=False,
                              headers={"Accept": "text/event-stream"},
                              timeout=STREAM_READ_TIMEOUT)
        with response:
            if response.status_code >= 400:
                body = response.json() if "json" in response.headers.get(
                    "Content-Type", "") else None
                raise ApiError.from_reply(response.status_code, body,
                                          response.headers.get("X-Request-Id"))
            parser = EventParser()
            # chunk_size None: each piece as it arrives (xfer sends an event per HTTP chunk)
            for chunk in response.iter_content(chunk_size=None):
                for event in parser.feed_bytes(chunk):
                    if event.name == "progress":
                        yield event.data
                    elif event.name == "end" and event.data.get("reason") == "deleted":
                        raise ApiError(404, "not_found", f"job {job_id} was deleted")
                    elif event.name == "end":
                        return  # finished (the last progress said so), or open it again

    # -- regions, finding images, raw object copies ---------------------------------------------

    def regions(self) -> dict[str, Any]:
        reply: dict[str, Any] = self._call("GET", "/v1/regions")
        return reply

    def find_images(self, *, checksum: str | None = None,
                    os_hash_value: str | None = None) -> dict[str, Any]:
        params = {k: v for k, v in (("checksum", checksum), ("os_hash_value", os_hash_value))
                  if v is not None}
        reply: dict[str, Any] = self._call("GET", "/v1/images", params=params)
        return reply

    def copy_object(self, source: Mapping[str, str], target: Mapping[str, str], *,
                    checksum: str | None = None, max_rate_mb: float | None = None,
                    idempotency_key: str | None = None) -> dict[str, Any]:
        """POST /v1/jobs (admin): a raw Swift object copy."""
        body: dict[str, Any] = {"source": dict(source), "target": dict(target)}
        if checksum is not None:
            body["checksum"] = checksum
        if max_rate_mb is not None:
            body["max_rate_mb"] = max_rate_mb
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        job: dict[str, Any] = self._call("POST", "/v1/jobs", body=body, headers=headers)
        return job

    def find_objects(self, *, checksum: str | None = None, os_hash_value: str | None = None,
                     region: str | None = None) -> dict[str, Any]:
        params = {k: v for k, v in (("checksum", checksum), ("os_hash_value", os_hash_value),
                                    ("region", region)) if v is not None}
        reply: dict[str, Any] = self._call("GET", "/v1/objects", params=params)
        return reply
