"""Keystone identity v3, sans IO: issuing, validating and delegating tokens.

xfer authenticates as its service user (password), validates its callers' tokens (GET
/v3/auth/tokens with its own token in X-Auth-Token and the caller's in X-Subject-Token), and
acts for a caller through a trust the caller creates for it (impersonating, with the caller's
roles on its project) and trust-scoped tokens issued to xfer's service user.

Tokens travel only in headers: never in a URL, an error message or a repr.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from xfer.errors import AuthError, RemoteError, TokenInvalid
from xfer.proto.http import Reply, Request

SERVICE = "keystone"
JSON = {"Content-Type": "application/json", "Accept": "application/json"}


@dataclass(frozen=True)
class Endpoint:
    service_type: str
    region: str
    interface: str
    url: str


@dataclass(frozen=True)
class TokenInfo:
    """What Keystone says about a valid token."""

    user_id: str
    user_name: str
    project_id: str
    project_name: str
    roles: frozenset[str]
    expires_at: datetime
    catalog: tuple[Endpoint, ...] = field(repr=False)
    trust_id: str | None = None

    def endpoint(self, service_type: str, region: str, interface: str = "public") -> str | None:
        for endpoint in self.catalog:
            if (endpoint.service_type, endpoint.region, endpoint.interface) == (
                    service_type, region, interface):
                return endpoint.url.rstrip("/")
        return None

    def regions(self, service_type: str, interface: str = "public") -> tuple[str, ...]:
        return tuple(sorted({e.region for e in self.catalog if e.service_type == service_type
                             and e.interface == interface and e.region}))


def _url(auth_url: str, path: str) -> str:
    return auth_url.rstrip("/") + path


def _raise_for_status(request: Request, reply: Reply, *expected: int) -> None:
    if reply.status in expected:
        return
    detail = ""
    try:
        detail = str(json.loads(reply.body)["error"]["message"])[:200]
    except (ValueError, KeyError, TypeError):
        detail = reply.body[:200].decode("utf-8", "replace").strip()
    error = AuthError if reply.status in (401, 403) else RemoteError
    raise error(SERVICE, request.method, request.path, reply.status,
                reply.header("X-Openstack-Request-Id"), detail)


def _body(reply: Reply) -> Any:
    try:
        return json.loads(reply.body)
    except ValueError:
        return None


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def token_info(document: Mapping[str, Any]) -> TokenInfo:
    """A token body ({"token": {...}}) as a TokenInfo; ValueError when it is not one."""
    try:
        token = document["token"]
        project = token.get("project") or {}
        catalog = tuple(
            Endpoint(service["type"], endpoint.get("region_id") or endpoint.get("region") or "",
                     endpoint["interface"], endpoint["url"])
            for service in token.get("catalog", ()) for endpoint in service["endpoints"])
        trust = token.get("OS-TRUST:trust") or {}
        return TokenInfo(
            user_id=token["user"]["id"], user_name=token["user"].get("name", ""),
            project_id=project.get("id", ""), project_name=project.get("name", ""),
            roles=frozenset(role["name"].lower() for role in token.get("roles", ())),
            expires_at=_parse_time(token["expires_at"]), catalog=catalog,
            trust_id=trust.get("id"))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a Keystone token body: {exc!r}") from None


def password_token_request(auth_url: str, user: str, password: str, project: str,
                           domain: str = "Default") -> Request:
    document = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": user, "domain": {"name": domain}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"name": domain}}}}}
    return Request("POST", _url(auth_url, "/auth/tokens"), JSON, body=json.dumps(document).encode())


def trust_token_request(auth_url: str, trustee_user: str, trustee_password: str, trust_id: str,
                        domain: str = "Default") -> Request:
    document = {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": trustee_user, "domain": {"name": domain}, "password": trustee_password}}},
        "scope": {"OS-TRUST:trust": {"id": trust_id}}}}
    return Request("POST", _url(auth_url, "/auth/tokens"), JSON, body=json.dumps(document).encode())


def parse_issued_token(request: Request, reply: Reply) -> tuple[str, TokenInfo]:
    """(the token, what it is); AuthError when the credentials or the trust are refused."""
    _raise_for_status(request, reply, 201)
    token = reply.header("X-Subject-Token")
    body = _body(reply)
    if not token or not isinstance(body, dict):
        raise RemoteError(SERVICE, request.method, request.path, reply.status, None,
                          "no X-Subject-Token or no token body")
    try:
        return token, token_info(body)
    except ValueError as exc:
        raise RemoteError(SERVICE, request.method, request.path, reply.status, None,
                          str(exc)) from None


def validate_token_request(auth_url: str, service_token: str, subject_token: str) -> Request:
    return Request("GET", _url(auth_url, "/auth/tokens"),
                   {"X-Auth-Token": service_token, "X-Subject-Token": subject_token,
                    "Accept": "application/json"})


def parse_validated_token(request: Request, reply: Reply) -> TokenInfo:
    """TokenInfo of the subject; TokenInvalid when Keystone does not know it (404) or it is
    malformed (400/401 on the subject); AuthError when xfer's own token was refused (401 with
    the caller's token well-formed cannot be told apart: the client renews its own and asks
    once more)."""
    if reply.status in (400, 404):
        raise TokenInvalid("the token is invalid, expired or revoked")
    _raise_for_status(request, reply, 200)
    body = _body(reply)
    try:
        return token_info(body if isinstance(body, dict) else {})
    except ValueError as exc:
        raise RemoteError(SERVICE, request.method, request.path, reply.status, None,
                          str(exc)) from None


def create_trust_request(auth_url: str, user_token: str, user: TokenInfo, trustee_user_id: str,
                         expires_at: datetime) -> Request:
    """A trust from the user to xfer's service user on the user's project, with the user's
    roles on it, impersonating: what xfer does through it, Glance and Swift see as the user."""
    document = {"trust": {
        "trustor_user_id": user.user_id, "trustee_user_id": trustee_user_id,
        "project_id": user.project_id, "impersonation": True,
        "roles": [{"name": role} for role in sorted(user.roles)],
        "expires_at": expires_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}
    return Request("POST", _url(auth_url, "/OS-TRUST/trusts"),
                   {**JSON, "X-Auth-Token": user_token}, body=json.dumps(document).encode())


def parse_created_trust(request: Request, reply: Reply) -> str:
    _raise_for_status(request, reply, 201)
    body = _body(reply)
    try:
        return str(body["trust"]["id"])
    except (KeyError, TypeError):
        raise RemoteError(SERVICE, request.method, request.path, reply.status, None,
                          "no trust id in the reply") from None
