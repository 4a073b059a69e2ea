"""What one project holds in one region of the local cloud, read from Glance and Swift
themselves (never from xfer's records): every image it owns, hidden or not, in any state, and
every container of its Swift account with its objects and their sizes.

    before = holdings(cloud, token, project_id, "RegionTwo")
    ... a copy that fails, is cancelled, or is interrupted ...
    left = holdings(cloud, token, project_id, "RegionTwo").since(before)
    assert left.counts() == {"images": 0, "containers": 0, "objects": 0, "bytes": 0}

The token must be scoped to the project (a member's). Fault tests and the soak benchmark use
this to say that nothing was left behind.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from xfer.dev.devcloud.loopback import DevcloudError, http_request
from xfer.dev.devcloud.state import CloudInfo

PAGE = 1000  # Glance's and Swift's default page limits are 25 and 10,000


@dataclass(frozen=True)
class Holdings:
    region: str
    images: Mapping[str, str]  # image id -> status
    objects: Mapping[str, Mapping[str, int]]  # container -> object name -> bytes

    @property
    def bytes(self) -> int:
        return sum(sum(sizes.values()) for sizes in self.objects.values())

    def counts(self) -> dict[str, int]:
        return {"images": len(self.images), "containers": len(self.objects),
                "objects": sum(len(sizes) for sizes in self.objects.values()),
                "bytes": self.bytes}

    def since(self, before: Holdings) -> Holdings:
        """What is here that was not there `before`: new images (or images in another
        state), new containers and, in any container, new or resized objects."""
        images = {image: status for image, status in self.images.items()
                  if before.images.get(image) != status}
        objects = {}
        for container, sizes in self.objects.items():
            earlier = before.objects.get(container, {})
            added = {name: size for name, size in sizes.items() if earlier.get(name) != size}
            if added or container not in before.objects:
                objects[container] = added
        return Holdings(self.region, images, objects)


def holdings(cloud: CloudInfo, token: str, project_id: str, region: str) -> Holdings:
    return Holdings(region, _images(cloud, token, project_id, region),
                    _objects(cloud, token, project_id, region))


def _images(cloud: CloudInfo, token: str, project_id: str, region: str) -> dict[str, str]:
    port = cloud.glances[region].port
    images = {}
    for hidden in ("false", "true"):  # a listing shows either, never both
        path = "/v2/images?" + urlencode({"owner": project_id, "os_hidden": hidden,
                                          "limit": PAGE})
        while path:
            page = _get_json(port, path, token)
            images.update({image["id"]: image["status"] for image in page["images"]})
            path = page.get("next", "")
    return images


def _objects(cloud: CloudInfo, token: str, project_id: str, region: str
             ) -> dict[str, dict[str, int]]:
    cluster = cloud.clusters[region]
    account = urlsplit(cluster.keystone_storage_url.replace("$(project_id)s", project_id)).path
    port = cluster.ports.keystone_proxy
    return {container["name"]: {entry["name"]: entry["bytes"] for entry in _listing(
                port, f"{account}/{quote(container['name'], safe='')}", token)}
            for container in _listing(port, account, token)}


def _listing(port: int, path: str, token: str) -> list[dict[str, Any]]:
    """Every entry of a Swift account or container listing, page by page."""
    entries: list[dict[str, Any]] = []
    while True:
        marker = entries[-1]["name"] if entries else ""
        page = _get_json(port, f"{path}?" + urlencode(
            {"format": "json", "limit": PAGE, "marker": marker}), token)
        entries += page
        if len(page) < PAGE:
            return entries


def _get_json(port: int, path: str, token: str) -> Any:
    status, _, body = http_request(port, "GET", path, {"X-Auth-Token": token}, timeout=30.0)
    if status == 204:  # Swift: an empty listing
        return []
    if status != 200:
        raise DevcloudError(f"GET {path} on port {port} answered {status}: {body[:200]!r}")
    return json.loads(body)
