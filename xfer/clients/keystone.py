"""Keystone IO: xfer's own service token, validation of callers' tokens (cached), trusts and
the trust-scoped tokens with which xfer acts as a user, and Swift credentials from them.

Plain aiohttp through xfer.proto.keystone rather than keystoneauth1: xfer needs three calls
(password token, trust-scoped token, token validation) and the life of a trust (create, find,
delete), which the protocol module builds and parses in under 300 lines. keystoneauth1 is
synchronous (requests): every call would need `asyncio.to_thread` and a second connection
pool beside the aiohttp one, and its strengths (many auth plugins, discovery, federation) are
not what a service user with a password needs. Renewal ahead of expiry, the one thing it would
give, is `_RenewedToken`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import aiohttp

from xfer.clients.transport import exchange
from xfer.errors import (
    AuthError,
    ConfigError,
    CopyFailed,
    ErrorCode,
    ServiceCredentialsRefused,
    TokenInvalid,
    TrustInvalid,
)
from xfer.proto import keystone, swift
from xfer.proto.http import Request
from xfer.proto.keystone import TokenInfo

log = logging.getLogger(__name__)
# A token is renewed this long before it expires (or half-way through a shorter life), so a
# request never sets out with a token that expires on the way.
RENEW_MARGIN = timedelta(minutes=5)
Clock = Callable[[], datetime]
# The role with which Keystone's default policy (identity:validate_token) lets xfer's token
# validate other users' tokens: without it every caller gets 503 service_misconfigured.
SERVICE_ROLE = "service"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class KeystoneSettings:
    """xfer's own Keystone user (role `service`), which validates tokens and is the trustee."""

    auth_url: str  # the v3 identity endpoint, http://HOST:PORT/v3
    user: str
    password: str = field(repr=False)
    project: str
    domain: str = "Default"

    def __post_init__(self) -> None:
        if not self.auth_url.startswith(("http://", "https://")):
            raise ConfigError(f"Keystone auth_url must be an http(s) URL, not {self.auth_url!r}")
        for name in ("user", "password", "project", "domain"):
            if not getattr(self, name):
                raise ConfigError(f"Keystone {name} must not be empty")


class _RenewedToken:
    """A token and what it is, issued again once it nears its expiry or when refused."""

    def __init__(self, issue: Callable[[], Awaitable[tuple[str, TokenInfo]]],
                 clock: Clock) -> None:
        self._issue = issue
        self._clock = clock
        self._current: tuple[str, TokenInfo] | None = None
        self._lock = asyncio.Lock()

    def _fresh(self) -> bool:
        if self._current is None:
            return False
        info = self._current[1]
        issued = info.issued_at or info.expires_at - 2 * RENEW_MARGIN
        margin = min(RENEW_MARGIN, (info.expires_at - issued) / 2)
        return self._clock() < info.expires_at - margin

    async def get(self, stale: str | None = None) -> tuple[str, TokenInfo]:
        """The current token; a new one when it nears expiry, or when it is `stale` (a
        service refused it)."""
        async with self._lock:
            if self._current is None or not self._fresh() or self._current[0] == stale:
                self._current = await self._issue()
            return self._current


class Keystone:
    def __init__(self, http: aiohttp.ClientSession, config: KeystoneSettings, *,
                 cache_size: int = 1024, cache_seconds: float = 300.0,
                 clock: Clock = utc_now) -> None:
        self.http = http
        self.config = config
        self.cache_size = cache_size
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._service = _RenewedToken(self._issue_service_token, clock)
        # sha256 of a token -> (until when, what Keystone said about it); never the token.
        self._validated: OrderedDict[str, tuple[datetime, TokenInfo]] = OrderedDict()

    async def _issue(self, request: Request) -> tuple[str, TokenInfo]:
        # Issuing a token twice is harmless: safe to send again on a fresh connection.
        return keystone.parse_issued_token(
            request, await exchange(self.http, keystone.SERVICE, request, repeatable=True))

    async def _issue_service_token(self) -> tuple[str, TokenInfo]:
        log.info("getting a service token for %s", self.config.user)
        c = self.config
        try:
            return await self._issue(keystone.password_token_request(
                c.auth_url, c.user, c.password, c.project, c.domain))
        except AuthError as exc:
            raise self._refused(exc, "refused xfer's service user") from exc

    def _refused(self, exc: AuthError, what: str) -> ServiceCredentialsRefused:
        c = self.config
        return ServiceCredentialsRefused(
            exc.service, exc.method, exc.path, exc.status, exc.txn_id,
            f"Keystone {what} {c.user!r} (domain {c.domain!r}, project {c.project!r}): "
            f"{exc.detail or exc.status}; the operator must check XFER_KEYSTONE_USER, "
            f"XFER_KEYSTONE_PASSWORD and XFER_KEYSTONE_PROJECT, and that the user holds the "
            f"`service` role on that project")

    async def service_token(self) -> str:
        return (await self._service.get())[0]

    async def service_user_id(self) -> str:
        return (await self._service.get())[1].user_id

    async def service_identity(self) -> TokenInfo:
        """What Keystone says of xfer's own token: its roles and the catalog it is given."""
        return (await self._service.get())[1]

    async def validate(self, user_token: str) -> TokenInfo:
        """What Keystone says of a caller's token; TokenInvalid when it does not vouch for it.
        Cached until the token expires, but for at most `cache_seconds` (so that a revoked
        token stops working soon after, as with keystonemiddleware's token_cache_time), at
        most `cache_size` tokens, least recently used out."""
        if not user_token.strip():
            raise TokenInvalid("no token given")
        key = hashlib.sha256(user_token.encode()).hexdigest()
        now = self._clock()
        cached = self._validated.get(key)
        if cached is not None and now < cached[0]:
            self._validated.move_to_end(key)
            return cached[1]
        info = await self._validate(user_token)
        self._validated[key] = (min(info.expires_at, now + timedelta(seconds=self.cache_seconds)),
                                info)
        self._validated.move_to_end(key)
        while len(self._validated) > self.cache_size:
            self._validated.popitem(last=False)
        return info

    async def _validate(self, user_token: str) -> TokenInfo:
        service_token = await self.service_token()
        request = keystone.validate_token_request(self.config.auth_url, service_token, user_token)
        reply = await exchange(self.http, keystone.SERVICE, request)
        if reply.status == 401:  # our own token was refused: renewed once
            service_token = (await self._service.get(stale=service_token))[0]
            request = keystone.validate_token_request(self.config.auth_url, service_token,
                                                      user_token)
            reply = await exchange(self.http, keystone.SERVICE, request)
        try:
            return keystone.parse_validated_token(request, reply)
        except AuthError as exc:  # without the `service` role: 403
            raise self._refused(exc, "does not let validate tokens") from exc

    async def vouch_for_service(self) -> None:
        """Keystone, asked now (never from the cache), still vouches for xfer's own token, as
        Glance and Swift need when they validate the service token xfer sends them. Raises
        TransportError or a 5xx RemoteError when Keystone does not answer,
        ServiceCredentialsRefused when it refuses xfer's user."""
        await self._validate(await self.service_token())

    async def user_token(self, request: Request) -> tuple[str, TokenInfo]:
        """A user's own token (the web view's sign-in: keystone.password_token_request or
        application_credential_token_request); TokenInvalid when Keystone refuses the
        credentials, without saying which part was wrong (nor does Keystone)."""
        try:
            return await self._issue(request)
        except AuthError:
            raise TokenInvalid("Keystone refused these credentials") from None

    async def create_trust(self, user_token: str, user: TokenInfo, expires_at: datetime) -> str:
        """A trust from the user to xfer's service user: the user's roles on its project,
        with impersonation, until `expires_at` (whole seconds). Created with the user's own
        token. TrustExists when Keystone holds a trust with that expiry already (one made by
        this very request, sent again after a closed connection, is found by find_trust)."""
        request = keystone.create_trust_request(
            self.config.auth_url, user_token, user, await self.service_user_id(), expires_at)
        trust_id = keystone.parse_created_trust(
            request, await exchange(self.http, keystone.SERVICE, request, repeatable=True))
        log.info("trust %s created for user %s on project %s", trust_id, user.user_id,
                 user.project_id)
        return trust_id

    async def find_trust(self, trustor_user_id: str, project_id: str,
                         expires_at: datetime) -> str | None:
        """The trust from that user on that project to xfer with that expiry (Keystone keeps
        at most one), from the trusts xfer is trustee of."""
        for trust in await self.trustee_trusts():
            if (trust.trustor_user_id, trust.project_id, trust.impersonation,
                    trust.expires_at) == (trustor_user_id, project_id, True, expires_at):
                return trust.id
        return None

    async def trustee_trusts(self) -> tuple[keystone.Trust, ...]:
        """The trusts naming xfer's service user trustee (one per job that holds one)."""
        service_token, info = await self._service.get()
        request = keystone.trustee_trusts_request(self.config.auth_url, service_token,
                                                  info.user_id)
        reply = await exchange(self.http, keystone.SERVICE, request)
        if reply.status == 401:
            service_token = (await self._service.get(stale=service_token))[0]
            request = keystone.trustee_trusts_request(self.config.auth_url, service_token,
                                                      info.user_id)
            reply = await exchange(self.http, keystone.SERVICE, request)
        return keystone.parse_trusts(request, reply)

    async def delete_trust(self, trust_id: str) -> bool:
        """Delete a trust with a token of its own (with impersonation it is the trustor's,
        whom Keystone's policy lets delete it). True: deleted now; False: Keystone gives no
        token for it any more (deleted or expired before, or its user lost the delegated
        roles, which leaves it useless until it expires)."""
        try:
            token = (await self._issue_trust_token(trust_id))[0]
        except TrustInvalid:
            return False
        request = keystone.delete_trust_request(self.config.auth_url, token, trust_id)
        deleted = keystone.parse_deleted_trust(
            request, await exchange(self.http, keystone.SERVICE, request))
        log.info("trust %s %s", trust_id, "deleted" if deleted else "was gone already")
        return deleted

    def trust_tokens(self, trust_id: str) -> TrustTokens:
        return TrustTokens(trust_id, lambda: self._issue_trust_token(trust_id), self._clock)

    async def _issue_trust_token(self, trust_id: str) -> tuple[str, TokenInfo]:
        c = self.config
        try:
            return await self._issue(keystone.trust_token_request(
                c.auth_url, c.user, c.password, trust_id, c.domain))
        except AuthError as exc:
            # Keystone says 401 both for a trust it no longer has and for xfer's own password:
            # a service token, asked for afresh, tells which (ServiceCredentialsRefused).
            await self._service.get(stale=(await self._service.get())[0])
            raise TrustInvalid(f"Keystone gives no token for trust {trust_id}, which this "
                               f"copy acts through: it expired or was deleted, or its user "
                               f"lost the delegated roles ({exc}); ask for the copy again"
                               ) from exc


class TrustTokens:
    """Trust-scoped tokens of one trust: xfer acting as the trustor (impersonation), renewed
    before they expire, so that a copy outlives the user's own token."""

    def __init__(self, trust_id: str, issue: Callable[[], Awaitable[tuple[str, TokenInfo]]],
                 clock: Clock = utc_now) -> None:
        self.trust_id = trust_id
        self._token = _RenewedToken(issue, clock)

    async def token(self, stale: str | None = None) -> str:
        """The current trust-scoped token; a new one if it is `stale` (it was refused)."""
        return (await self._token.get(stale))[0]

    async def info(self) -> TokenInfo:
        """Of the current token: the user's project, the trust's roles, the catalog."""
        return (await self._token.get())[1]


class UserTokens(Protocol):
    """Tokens that act as one user: a trust's (TrustTokens) or a caller's own (CallerToken)."""

    async def token(self, stale: str | None = None) -> str: ...

    async def info(self) -> TokenInfo: ...


class CallerToken:
    """The token a request came with, for the calls made while it is answered: it cannot be
    renewed, so a refused one stays refused."""

    def __init__(self, token: str, info: TokenInfo) -> None:
        self._token = token
        self._info = info

    async def token(self, stale: str | None = None) -> str:
        return self._token

    async def info(self) -> TokenInfo:
        return self._info


class KeystoneSwiftAuth:
    """clients/auth.py's Authenticator for SwiftClient, with a user's tokens: the
    object-store endpoint of `region` from the token's catalog, in the account of `account`
    (a project id: the image owner's, for a source image shared with the user) when given."""

    def __init__(self, tokens: UserTokens, region: str, account: str | None = None) -> None:
        self.tokens = tokens
        self.region = region
        self.account = account
        self._given: str | None = None

    async def authenticate(self, http: aiohttp.ClientSession) -> swift.Credentials:
        # Asked again means Swift refused the token given last: get a new one.
        token = await self.tokens.token(stale=self._given)
        self._given = token
        info = await self.tokens.info()
        storage_url = info.endpoint("object-store", self.region)
        if storage_url is None:
            raise CopyFailed(ErrorCode.REGION_NOT_AVAILABLE,
                             f"the user's catalog has no public object-store endpoint in "
                             f"region {self.region} (it has: "
                             f"{', '.join(info.regions('object-store')) or 'none'})")
        if self.account is not None:
            storage_url = account_url(storage_url, info.project_id, self.account)
        return swift.Credentials(storage_url=storage_url, token=token)


def account_url(storage_url: str, project_id: str, account: str) -> str:
    """The storage URL of another project's account on the same Swift: the catalog's
    `.../v1/AUTH_<project_id>` with the project id replaced (the reseller prefix kept)."""
    base, _, last = storage_url.rstrip("/").rpartition("/")
    if not last.endswith(project_id):
        raise ValueError(f"storage URL {storage_url} does not end with project {project_id}")
    return f"{base}/{last[:len(last) - len(project_id)]}{account}"
