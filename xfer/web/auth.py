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

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from xfer.clients.keystone import Keystone
from xfer.errors import TokenInvalid
from xfer.proto.keystone import TokenInfo
from xfer.web.errors import error_reply
from xfer.web.policy import ALL_PROJECTS_ROLE, Policy

KEYSTONE = web.AppKey("keystone", Keystone)
POLICY = web.AppKey("policy", Policy)
# Probes and documents an operator or a load balancer reads without a token.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/v1/openapi.json"})
UI_PREFIX = "/ui/"
TOKEN_HEADER = "X-Auth-Token"
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


def _unauthorized(request: web.Request, exc: TokenInvalid) -> web.Response:
    response = error_reply(request, exc)
    response.headers["WWW-Authenticate"] = f'Keystone uri="{request.app[KEYSTONE].config.auth_url}"'
    return response


@web.middleware
async def keystone_auth(request: web.Request,
                        handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                        ) -> web.StreamResponse:
    """Keystone's other answers (down, or refusing xfer's own credentials) are raised, and
    answered by the error table (errors.py)."""
    if request.path in OPEN_PATHS or request.path.startswith(UI_PREFIX):
        return await handler(request)  # the web view signs its users in itself (ui_session.py)
    try:
        request[CALLER] = await _caller(request)
    except TokenInvalid as exc:
        return _unauthorized(request, exc)
    return await handler(request)


async def caller_of_token(request: web.Request, token: str) -> Caller:
    """The caller a token stands for, as Keystone says (cached); TokenInvalid otherwise."""
    try:
        info = await request.app[KEYSTONE].validate(token)
    except TokenInvalid:
        raise TokenInvalid("the token is invalid or expired; get a new one from "
                           "Keystone") from None
    return Caller(token, info)


async def _caller(request: web.Request) -> Caller:
    tokens = request.headers.getall(TOKEN_HEADER, [])
    if len(tokens) > 1:  # which one would act is anybody's guess: act for none
        raise TokenInvalid(f"send one X-Auth-Token, not {len(tokens)}")
    token = tokens[0].strip() if tokens else ""
    if not token:
        raise TokenInvalid("this API needs a Keystone token in X-Auth-Token")
    if len(token) > MAX_TOKEN_LENGTH or not token.isascii() or not token.isprintable():
        raise TokenInvalid("X-Auth-Token is not a Keystone token")
    return await caller_of_token(request, token)


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
