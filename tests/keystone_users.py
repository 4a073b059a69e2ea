"""Keystone users and trusts of the test session's cloud, made and read as an operator and as
the user would: a fresh user per test, so that what a test counts in Keystone is its own."""

from __future__ import annotations

import secrets
from typing import Any

from keystoneauth1 import session as ksa_session
from keystoneauth1.identity import v3

from tests.conftest import unique
from tests.test_cloud_keystone_glance import keystone_of, user_session
from xfer.dev import devcloud


def admin_session(cloud: devcloud.CloudInfo) -> ksa_session.Session:
    return user_session(cloud, "admin")


def _one(session: ksa_session.Session, url: str, key: str) -> dict[str, Any]:
    found = session.get(url).json()[key]
    assert len(found) == 1, found
    entry: dict[str, Any] = found[0]
    return entry


def new_user(cloud: devcloud.CloudInfo, project: str = "alpha", role: str = "member"
             ) -> ksa_session.Session:
    """A user made now, with `role` on `project`, and a session acting as it."""
    name, password = make_user(cloud, project, role)
    return ksa_session.Session(auth=v3.Password(
        auth_url=keystone_of(cloud).auth_url, username=name, password=password,
        project_name=project, user_domain_name="Default", project_domain_name="Default"))


def make_user(cloud: devcloud.CloudInfo, project: str, role: str) -> tuple[str, str]:
    """(name, password) of a user made now, with `role` on `project`."""
    keystone = keystone_of(cloud)
    admin = admin_session(cloud)
    name, password = unique("user"), secrets.token_urlsafe(16)
    made = admin.post(f"{keystone.auth_url}/users", json={"user": {
        "name": name, "password": password, "domain_id": "default"}})
    assert made.status_code == 201, made.text
    user_id = made.json()["user"]["id"]
    project_id = _one(admin, f"{keystone.auth_url}/projects?name={project}", "projects")["id"]
    role_id = _one(admin, f"{keystone.auth_url}/roles?name={role}", "roles")["id"]
    granted = admin.put(f"{keystone.auth_url}/projects/{project_id}/users/{user_id}/roles/"
                        f"{role_id}")
    assert granted.status_code == 204, granted.text
    admin.session.close()
    return name, password


def live_trusts(cloud: devcloud.CloudInfo, user: ksa_session.Session) -> list[dict[str, Any]]:
    """The trusts Keystone holds from this user, as the user lists them (deleted ones and
    expired ones are not listed)."""
    keystone = keystone_of(cloud)
    # connect_retries: Keystone's server may close this session's idle keep-alive connection
    # just as it is reused (ConnectionResetError seen on 12-08, once in a full run); a GET
    # is safe to send again.
    response = user.get(f"{keystone.auth_url}/OS-TRUST/trusts",
                        params={"trustor_user_id": user.get_user_id()}, connect_retries=2)
    assert response.status_code == 200, response.text
    trusts: list[dict[str, Any]] = response.json()["trusts"]
    return trusts


def application_credential_session(cloud: devcloud.CloudInfo, user: ksa_session.Session
                                   ) -> ksa_session.Session:
    """A session of an application credential the user makes now (Keystone lets such tokens
    create no trust)."""
    keystone = keystone_of(cloud)
    made = user.post(f"{keystone.auth_url}/users/{user.get_user_id()}/application_credentials",
                     json={"application_credential": {"name": unique("appcred")}})
    assert made.status_code == 201, made.text
    credential = made.json()["application_credential"]
    return ksa_session.Session(auth=v3.ApplicationCredential(
        auth_url=keystone.auth_url, application_credential_id=credential["id"],
        application_credential_secret=credential["secret"]))
