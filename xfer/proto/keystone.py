"""Keystone v3 identity protocol, sans IO: tokens (password and trust-scoped), token
validation with the service catalog, and trusts.

`auth_url` is the v3 identity endpoint (`http://HOST:PORT/v3`). A token travels only in the
`X-Auth-Token`/`X-Subject-Token` headers of a Request (hidden by its repr) and in the value
`parse_issued_token` returns: no error message, TokenInfo or repr here ever holds one.

Measured against this cloud's Keystone 30: a subject token Keystone cannot read, that expired
or was revoked gets 404 on validation; a refused `X-Auth-Token` gets 401; a trust naming a
role the trustor does not hold gets 404 ("Could not find role"); a token of an application
credential (restricted or not) or of a trust may not create a trust (403, "Delegated tokens
cannot manage trusts"); a token for a trust that does not exist (deleted, expired) gets 401.
A trust outlives the token that created it (revoked: the trust still gives tokens); deleting
the trust invalidates its tokens. Keystone keeps a trust's expiry in whole seconds and at most
one trust per trustor, trustee, project, impersonation and expiry: a second one is 409
("Duplicate entry"), even when the first was deleted. A trust with impersonation may be
deleted with a token of that very trust (its user is the trustor, whom the default policy
`identity:delete_trust` allows: 204), and its trustee may list the trusts it is trustee of
with its own token (`?trustee_user_id=`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from xfer.errors import AuthError, RemoteError, TokenInvalid, TrustExists, TrustRefused
from xfer.proto.http import Reply, Request

SERVICE = "keystone"
JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}


@dataclass(frozen=True)
class Endpoint:
    service_type: str
    region: str
    interface: str
    url: str


@dataclass(frozen=True)
class TokenInfo:
    """What Keystone says about a valid, project-scoped token (never the token itself)."""

    user_id: str
    user_name: str
    project_id: str
    project_name: str
    roles: frozenset[str]
    expires_at: datetime  # aware, UTC
    catalog: tuple[Endpoint, ...]
    trust_id: str | None = None  # set for a trust-scoped token
    issued_at: datetime | None = None  # aware, UTC

    def endpoint(self, service_type: str, region: str, interface: str = "public") -> str | None:
        for endpoint in self.catalog:
            if (endpoint.service_type, endpoint.region, endpoint.interface) == (
                    service_type, region, interface):
                return endpoint.url
        return None

    def regions(self, service_type: str) -> tuple[str, ...]:
        """The regions with a public endpoint of this service type, sorted."""
        return tuple(sorted({endpoint.region for endpoint in self.catalog
                             if endpoint.service_type == service_type
                             and endpoint.interface == "public"}))

    def storage_regions(self) -> tuple[str, ...]:
        """The regions holding images: an image and an object-store endpoint each. A region
        with an image endpoint only is a front of another (xfer's Glance-compatible read
        endpoint, `RegionOne-via-xfer`): the same images again, not a place to copy to or
        from, nor one to search."""
        objects = set(self.regions("object-store"))
        return tuple(region for region in self.regions("image") if region in objects)


def _tokens_url(auth_url: str) -> str:
    return auth_url.rstrip("/") + "/auth/tokens"


def keystone_message(reply: Reply) -> str:
    """Keystone's own sentence from an error reply ({"error": {"message": ...}})."""
    try:
        error = json.loads(reply.body).get("error", {})
        return str(error.get("message") or "").strip()
    except (ValueError, AttributeError):
        return reply.body[:200].decode("utf-8", "replace").strip()


def request_id(reply: Reply) -> str | None:
    return reply.header("X-Openstack-Request-Id")


def _remote_error(request: Request, reply: Reply, cls: type[RemoteError] = RemoteError,
                  detail: str | None = None) -> RemoteError:
    return cls(SERVICE, request.method, request.path, reply.status, request_id(reply),
               detail if detail is not None else keystone_message(reply))


# --- tokens ---------------------------------------------------------------------------------

def _password_identity(user: str, password: str, domain: str) -> dict[str, Any]:
    return {"methods": ["password"],
            "password": {"user": {"name": user, "domain": {"name": domain},
                                  "password": password}}}


def _token_request(auth_url: str, document: dict[str, Any]) -> Request:
    return Request("POST", _tokens_url(auth_url), JSON_HEADERS,
                   body=json.dumps({"auth": document}).encode())


def password_token_request(auth_url: str, user: str, password: str, project: str,
                           domain: str = "Default") -> Request:
    """A project-scoped token for a user of `domain` (the project in the same domain)."""
    return _token_request(auth_url, {
        "identity": _password_identity(user, password, domain),
        "scope": {"project": {"name": project, "domain": {"name": domain}}}})


def application_credential_token_request(auth_url: str, credential_id: str,
                                        secret: str) -> Request:
    """A token from an application credential: its scope (project, roles) is the
    credential's own, so no scope is asked for."""
    return _token_request(auth_url, {
        "identity": {"methods": ["application_credential"],
                     "application_credential": {"id": credential_id, "secret": secret}}})


def trust_token_request(auth_url: str, trustee_user: str, trustee_password: str, trust_id: str,
                        domain: str = "Default") -> Request:
    """A trust-scoped token: the trustee authenticates, the token acts as the trust says
    (with impersonation: as the trustor, on the trust's project, with the trust's roles)."""
    return _token_request(auth_url, {
        "identity": _password_identity(trustee_user, trustee_password, domain),
        "scope": {"OS-TRUST:trust": {"id": trust_id}}})


def parse_issued_token(request: Request, reply: Reply) -> tuple[str, TokenInfo]:
    """(the token, what it is) from a token request's reply; 401 is AuthError."""
    if reply.status in (401, 403):
        raise _remote_error(request, reply, AuthError)
    if reply.status != 201:
        raise _remote_error(request, reply)
    token = reply.header("X-Subject-Token")
    if not token:
        raise _remote_error(request, reply, detail="the reply has no X-Subject-Token")
    try:
        return token, token_info(json.loads(reply.body)["token"])
    except (ValueError, KeyError, TypeError) as exc:
        raise _remote_error(request, reply,
                            detail=f"unreadable token document: {exc!r}") from exc


def validate_token_request(auth_url: str, service_token: str, subject_token: str) -> Request:
    return Request("GET", _tokens_url(auth_url), {"X-Auth-Token": service_token,
                                                  "X-Subject-Token": subject_token,
                                                  "Accept": "application/json"})


def parse_validated_token(request: Request, reply: Reply) -> TokenInfo:
    """404 (Keystone cannot read the subject token, or it expired or was revoked) is
    TokenInvalid, and so is a valid token that is not scoped to a project; 401 and 403 are
    AuthError: Keystone refused xfer's own token, which is no fault of the caller's."""
    if reply.status == 404:
        raise TokenInvalid("Keystone does not accept the token (malformed, expired or revoked)")
    if reply.status in (401, 403):
        raise _remote_error(request, reply, AuthError,
                            f"xfer's service token may not validate tokens: "
                            f"{keystone_message(reply)}")
    if reply.status != 200:
        raise _remote_error(request, reply)
    try:
        document = json.loads(reply.body)["token"]
    except (ValueError, KeyError, TypeError) as exc:
        raise _remote_error(request, reply,
                            detail=f"unreadable token document: {exc!r}") from exc
    if not isinstance(document.get("project"), dict):
        raise TokenInvalid("the token is not scoped to a project: ask Keystone for a "
                           "project-scoped token")
    return token_info(document)


def parse_time(value: str) -> datetime:
    """Keystone's ISO 8601 times ("2026-12-02T00:15:33.000000Z") as aware UTC datetimes."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_catalog(catalog: Any) -> tuple[Endpoint, ...]:
    """Every endpoint of a token's catalog ([] when the token was issued without one)."""
    endpoints = []
    for service in catalog or ():
        for endpoint in service.get("endpoints", ()):
            region = endpoint.get("region_id") or endpoint.get("region") or ""
            endpoints.append(Endpoint(str(service["type"]), str(region),
                                      str(endpoint["interface"]), str(endpoint["url"])))
    return tuple(endpoints)


def token_info(document: Mapping[str, Any]) -> TokenInfo:
    """A TokenInfo from Keystone's token document (the reply's "token")."""
    user, project = document["user"], document["project"]
    trust = document.get("OS-TRUST:trust")
    issued = document.get("issued_at")
    return TokenInfo(
        user_id=str(user["id"]), user_name=str(user.get("name", "")),
        project_id=str(project["id"]), project_name=str(project.get("name", "")),
        roles=frozenset(str(role["name"]) for role in document.get("roles", ())),
        expires_at=parse_time(document["expires_at"]),
        catalog=parse_catalog(document.get("catalog")),
        trust_id=str(trust["id"]) if isinstance(trust, dict) else None,
        issued_at=parse_time(issued) if issued else None,
    )


# --- trusts ---------------------------------------------------------------------------------

def create_trust_request(auth_url: str, user_token: str, user: TokenInfo, trustee_user_id: str,
                         expires_at: datetime) -> Request:
    """The user (trustor, whose token this is) delegates its roles on its project to the
    trustee, with impersonation: tokens of the trust act as the user, so what xfer creates
    is the user's, and Swift and Glance apply the user's own rights."""
    body = {"trust": {
        "trustor_user_id": user.user_id,
        "trustee_user_id": trustee_user_id,
        "project_id": user.project_id,
        "impersonation": True,
        "roles": [{"name": name} for name in sorted(user.roles)],
        "expires_at": format_time(expires_at),
    }}
    return Request("POST", auth_url.rstrip("/") + "/OS-TRUST/trusts",
                   {"X-Auth-Token": user_token, **JSON_HEADERS}, body=json.dumps(body).encode())


def parse_created_trust(request: Request, reply: Reply) -> str:
    """The trust's id. 401 (the user's token no longer holds), 403 and 404 (a role the user
    does not hold) are TrustRefused, with Keystone's reason; 409 is TrustExists (a trust
    with the same trustor, trustee, project and expiry exists, or existed)."""
    if reply.status == 409:
        raise _remote_error(request, reply, TrustExists)
    if reply.status == 401:
        raise _remote_error(request, reply, TrustRefused,
                            "Keystone refused your token when creating the trust (it expired "
                            "or was revoked); get a new token and ask again")
    if reply.status in (403, 404):
        raise _remote_error(request, reply, TrustRefused, (
            f"Keystone refused to let xfer act for you ({reply.status}: "
            f"{keystone_message(reply)}). A trust is created with your own project-scoped "
            f"token from a password (or other direct) login: Keystone refuses it to tokens "
            f"of an application credential, restricted or not, and of a trust. Sign in, or "
            f"get your token, with your password and ask again."))
    if reply.status != 201:
        raise _remote_error(request, reply)
    try:
        return str(json.loads(reply.body)["trust"]["id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise _remote_error(request, reply, detail=f"unreadable trust: {exc!r}") from exc


@dataclass(frozen=True)
class Trust:
    """A trust as Keystone lists it (never a token)."""

    id: str
    trustor_user_id: str
    trustee_user_id: str
    project_id: str | None
    impersonation: bool
    expires_at: datetime | None  # aware, UTC; None: never


def _trusts_url(auth_url: str) -> str:
    return auth_url.rstrip("/") + "/OS-TRUST/trusts"


def trustee_trusts_request(auth_url: str, token: str, trustee_user_id: str) -> Request:
    """The trusts whose trustee is the token's user (Keystone allows the trustee this)."""
    return Request("GET", _trusts_url(auth_url), {"X-Auth-Token": token,
                                                  "Accept": "application/json"},
                   params={"trustee_user_id": trustee_user_id})


def parse_trusts(request: Request, reply: Reply) -> tuple[Trust, ...]:
    if reply.status in (401, 403):
        raise _remote_error(request, reply, AuthError)
    if reply.status != 200:
        raise _remote_error(request, reply)
    try:
        return tuple(Trust(
            id=str(trust["id"]), trustor_user_id=str(trust["trustor_user_id"]),
            trustee_user_id=str(trust["trustee_user_id"]),
            project_id=None if trust.get("project_id") is None else str(trust["project_id"]),
            impersonation=bool(trust.get("impersonation")),
            expires_at=parse_time(trust["expires_at"]) if trust.get("expires_at") else None)
            for trust in json.loads(reply.body)["trusts"])
    except (ValueError, KeyError, TypeError) as exc:
        raise _remote_error(request, reply, detail=f"unreadable trusts: {exc!r}") from exc


def delete_trust_request(auth_url: str, token: str, trust_id: str) -> Request:
    """Deleted with a token of the trustor: with impersonation, a token of the trust itself."""
    return Request("DELETE", f"{_trusts_url(auth_url)}/{trust_id}",
                   {"X-Auth-Token": token, "Accept": "application/json"})


def parse_deleted_trust(request: Request, reply: Reply) -> bool:
    """True: deleted now; False: there is no such trust (deleted or expired before)."""
    if reply.status == 204:
        return True
    if reply.status == 404:
        return False
    if reply.status in (401, 403):
        raise _remote_error(request, reply, AuthError)
    raise _remote_error(request, reply)
