"""The soak's users and sources (benchmarks/soak.py): a member of each of N projects (alice of
alpha, bob of beta, and users of projects made here as Keystone's admin), and source images
uploaded through the source region's Glance as their projects' members."""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import aiohttp

from xfer.dev import devcloud
from xfer.dev.demo import upload_image
from xfer.dev.devcloud.keystone_server import OpenStackUser, issue_token
from xfer.dev.devcloud.loopback import http_request, json_request

UPLOADS_AT_ONCE = 4


@dataclass
class Project:
    name: str
    user: OpenStackUser
    keystone: devcloud.KeystoneInfo

    @cached_property
    def _issued(self) -> devcloud.IssuedToken:
        issued = issue_token(self.keystone, self.user, timeout=30)
        if isinstance(issued, str):
            raise SystemExit(issued)
        return issued

    def token(self) -> str:
        return self._issued.token  # an hour's token: the soak takes minutes

    @property
    def id(self) -> str:
        return self._issued.project_id

    def live_trusts(self) -> int:
        user_id = self._issued.body["token"]["user"]["id"]
        trusts = _get(self.keystone.port, f"/v3/OS-TRUST/trusts?trustor_user_id={user_id}",
                      self.token())
        return len(trusts["trusts"])


def make_projects(cloud: devcloud.CloudInfo, count: int) -> list[Project]:
    keystone = cloud.keystone
    assert keystone is not None
    users = [keystone.user("alice"), keystone.user("bob")]
    admin = issue_token(keystone, keystone.user("admin"), timeout=30)
    if isinstance(admin, str):
        raise SystemExit(admin)
    for index in range(len(users), count):
        users.append(_member_of_new_project(keystone, admin.token, f"soak-{index}"))
    return [Project(user.project, user, keystone) for user in users[:count]]


def _member_of_new_project(keystone: devcloud.KeystoneInfo, admin_token: str, name: str
                           ) -> OpenStackUser:
    headers = {"X-Auth-Token": admin_token}

    def made(path: str, document: dict[str, Any], key: str) -> str:
        status, _, body = json_request(keystone.port, "POST", f"/v3/{path}", document, headers)
        if status != 201:
            raise SystemExit(f"POST /v3/{path}: {status} {body}")
        return str(body[key]["id"])

    project_id = made("projects", {"project": {"name": name, "domain_id": "default"}},
                      "project")
    password = secrets.token_urlsafe(16)
    user_id = made("users", {"user": {"name": f"{name}-member", "password": password,
                                      "domain_id": "default"}}, "user")
    role_id = _get(keystone.port, "/v3/roles?name=member", admin_token)["roles"][0]["id"]
    granted = http_request(keystone.port, "PUT",
                           f"/v3/projects/{project_id}/users/{user_id}/roles/{role_id}",
                           headers)[0]
    if granted != 204:
        raise SystemExit(f"granting member on {name}: {granted}")
    return OpenStackUser(f"{name}-member", password, name, "member")


def _get(port: int, path: str, token: str) -> Any:
    status, _, body = http_request(port, "GET", path, {"X-Auth-Token": token}, timeout=30)
    if status != 200:
        raise SystemExit(f"GET {path}: {status} {body[:300]!r}")
    return json.loads(body)


async def upload_sources(cloud: devcloud.CloudInfo, projects: list[Project], sizes: list[int],
                         region: str) -> list[dict[str, Any]]:
    """One image per size, the projects in turn, a few uploads at a time: each the Glance
    image record with its owner's token and project name beside it."""
    glance = f"http://127.0.0.1:{cloud.glances[region].port}"
    tokens = {p.name: await asyncio.to_thread(p.token) for p in projects}
    at_once = asyncio.Semaphore(UPLOADS_AT_ONCE)

    async def one(index: int, size: int) -> dict[str, Any]:
        project = projects[index % len(projects)]
        async with at_once:
            image, _, _ = await upload_image(http, glance, {"X-Auth-Token": tokens[project.name]},
                                             size)
        return {**image, "token": tokens[project.name], "project": project.name}

    async with aiohttp.ClientSession() as http:
        return list(await asyncio.gather(*(one(i, size) for i, size in enumerate(sizes))))
