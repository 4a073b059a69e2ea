"""Keystone authentication and policy for the API.

With Keystone configured, every request but the operator's probes carries the user's token in
X-Auth-Token; xfer validates it with Keystone (clients/keystone.py caches each validation
until the token expires) and answers 401 without a valid one. What the caller may do is the
policy's (web/policy.py); which jobs it sees is always its own project's (admin: all).
Without Keystone (the local benchmark, tempauth-only deployments) the API is open and there is
no caller.

The token is kept only in the request while it is handled: never stored, never logged.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from xfer.clients.keystone import Keystone
from xfer.errors import ServiceCredentialsRefused, TokenInvalid, XferError
from xfer.proto.keystone import TokenInfo
from xfer.web.errors import error_response
from xfer.web.policy import ALL_PROJECTS_ROLE, Policy

log = logging.getLogger(__name__)
KEYSTONE = web.AppKey("keystone", Keystone)
POLICY = web.AppKey("policy", Policy)
# Probes and documents an operator or a load balancer reads without a token.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/v1/openapi.json"})
TOKEN_HEADER = "X-Auth-Token"
KEYSTONE_RETRY_AFTER_SECONDS = 5
MAX_TOKEN_LENGTH = 8192  # fernet tokens are ~200 bytes, PKI-era ones a few KiB


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the token (for calls made on its behalf while the request lasts)
    and what Keystone said about it."""

    token: str = field(repr=False)
    info: TokenInfo

    @property
    def sees_all_projects(self) -> bool:
        return ALL_PROJECTS_ROLE in self.info.roles

    @property
    def project_scope(self) -> str | None:
        """The project whose jobs this caller sees; None: every project."""
        return None if self.sees_all_projects else self.info.project_id


CALLER = web.RequestKey("caller", Caller)


def _unauthorized(request: web.Request, message: str) -> web.Response:
    response = error_response(401, "unauthorized", message, TOKEN_HEADER)
    response.headers["WWW-Authenticate"] = f'Keystone uri="{request.app[KEYSTONE].config.auth_url}"'
    return response


@web.middleware
async def keystone_auth(request: web.Request,
                        handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                        ) -> web.StreamResponse:
    if request.path in OPEN_PATHS:
        return await handler(request)
    tokens = request.headers.getall(TOKEN_HEADER, [])
    if len(tokens) > 1:  # which one would act is anybody's guess: act for none
        return _unauthorized(request, f"send one X-Auth-Token, not {len(tokens)}")
    token = tokens[0].strip() if tokens else ""
    if not token:
        return _unauthorized(request, "this API needs a Keystone token in X-Auth-Token")
    if len(token) > MAX_TOKEN_LENGTH or not token.isascii() or not token.isprintable():
        return _unauthorized(request, "X-Auth-Token is not a Keystone token")
    try:
        info = await request.app[KEYSTONE].validate(token)
    except TokenInvalid:
        return _unauthorized(request, "the token is invalid or expired; get a new one from "
                                      "Keystone")
    except ServiceCredentialsRefused as exc:
        return service_misconfigured(exc)
    except XferError as exc:  # Keystone down or unreachable
        return keystone_unavailable(exc)
    request[CALLER] = Caller(token, info)
    return await handler(request)


def keystone_unavailable(exc: XferError) -> web.Response:
    """503: Keystone could not answer for xfer; the request may be sent again shortly."""
    log.warning("Keystone unavailable: %s", exc)  # the detail is for the operator
    response = error_response(503, "keystone_unavailable",
                              "Keystone did not answer xfer; try again shortly")
    response.headers["Retry-After"] = str(KEYSTONE_RETRY_AFTER_SECONDS)
    return response


def service_misconfigured(exc: ServiceCredentialsRefused) -> web.Response:
    """503: Keystone refuses xfer's own service user; trying again will not help until the
    operator fixes xfer's configuration (the log says which credential and why)."""
    log.error("xfer's own Keystone credentials refused: %s", exc)
    return error_response(503, "service_misconfigured",
                          "Keystone refuses xfer's own service credentials, so xfer cannot act "
                          "for anyone; this is the cloud operator's to fix (xfer's log says "
                          "what Keystone answered), not something to try again")


def caller_of(request: web.Request) -> Caller | None:
    """The authenticated caller; None when the API runs without Keystone."""
    return request.get(CALLER)


def authorize(request: web.Request, rule: str) -> Caller | None:
    """The caller, when the policy allows it `rule`; a 403 JSON reply otherwise."""
    caller = caller_of(request)
    if caller is None:
        return None
    if not request.app[POLICY].allows(rule, caller.info.roles):
        raise web.HTTPForbidden(
            reason=f"policy does not allow {rule} to roles {sorted(caller.info.roles)}")
    return caller


def require_caller(request: web.Request, rule: str) -> Caller:
    """For endpoints that only exist with Keystone (image copies, regions, image search)."""
    caller = authorize(request, rule)
    if caller is None:
        raise web.HTTPNotFound(reason="this xfer runs without Keystone: image copies need "
                                      "XFER_KEYSTONE_URL")
    return caller
