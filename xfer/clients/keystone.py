"""Keystone for xfer: its own service token, its callers' tokens validated, and trusts.

Two tools, each where it is better:
- keystoneauth1 obtains and renews xfer's own tokens: its service user's, and the
  trust-scoped ones it acts for a user with. Its identity plugins cache a token and fetch a
  new one shortly before expiry (and after `invalidate`), under a lock, which is exactly what
  long copies need; it is blocking (requests), so each call runs in a thread, and is rare: a
  token lasts an hour and Swift and Glance clients cache it.
- Per-request work goes through aiohttp and proto/keystone.py: validating a caller's token
  (cached, bounded, until it expires or for at most `cache_seconds`, so that a revoked token
  stops working soon after) and creating a trust with the caller's token.

No token is ever logged or stored; the validation cache is keyed by a SHA-256 of the token.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from keystoneauth1 import exceptions as ksa_exceptions
from keystoneauth1 import session as ksa_session
from keystoneauth1.identity import v3

from xfer.clients.transport import exchange
from xfer.errors import AuthError, CopyFailed, RemoteError, TransportError
from xfer.proto import keystone, swift
from xfer.proto.keystone import TokenInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KeystoneSettings:
    auth_url: str  # http://HOST:PORT/v3
    user: str
    password: str = field(repr=False)
    project: str
    domain: str = "Default"


def _info_from_access(access: Any) -> TokenInfo:
    """keystoneauth1's AccessInfoV3 as the TokenInfo that proto/keystone.py parses."""
    return keystone.token_info({"token": {
        "user": {"id": access.user_id, "name": access.username},
        "project": {"id": access.project_id or "", "name": access.project_name or ""},
        "roles": [{"name": role} for role in access.role_names or ()],
        "expires_at": access.expires.isoformat(),
        "catalog": access.service_catalog.catalog or [],
        "OS-TRUST:trust": {"id": access.trust_id} if access.trust_id else {},
    }})


class _PluginTokens:
    """Tokens of one keystoneauth1 identity plugin, fetched in a thread."""

    def __init__(self, plugin: v3.Password, what: str) -> None:
        self._plugin = plugin
        self._session = ksa_session.Session(auth=plugin)
        self._what = what

    async def _call(self, method: str) -> Any:
        def call() -> Any:
            return getattr(self._plugin, method)(self._session)

        try:
            return await asyncio.to_thread(call)
        except ksa_exceptions.Unauthorized as exc:
            raise AuthError("keystone", "POST", "/v3/auth/tokens", 401, None,
                            f"{self._what} refused: {exc.message}") from None
        except ksa_exceptions.NotFound as exc:
            raise AuthError("keystone", "POST", "/v3/auth/tokens", 404, None,
                            f"{self._what} refused: {exc.message}") from None
        except ksa_exceptions.ConnectionError as exc:
            raise TransportError("keystone", "POST", "/v3/auth/tokens", str(exc)) from None
        except ksa_exceptions.HttpError as exc:
            raise RemoteError("keystone", "POST", "/v3/auth/tokens", exc.http_status or 500,
                              None, str(exc.message)) from None

    async def token(self) -> str:
        token: str = await self._call("get_token")
        return token

    async def info(self) -> TokenInfo:
        return _info_from_access(await self._call("get_access"))

    def invalidate(self) -> None:
        self._plugin.invalidate()


class TrustTokens:
    """Trust-scoped tokens for xfer acting as the user who created the trust (impersonation:
    Glance and Swift see that user, with the roles it delegated)."""

    def __init__(self, tokens: _PluginTokens) -> None:
        self._tokens = tokens

    async def token(self) -> str:
        try:
            return await self._tokens.token()
        except AuthError as exc:
            raise CopyFailed("trust_invalid",
                             "the Keystone trust this copy acts through was deleted or has "
                             f"expired, or its user lost the roles it delegated ({exc}); ask "
                             "for the copy again") from None

    async def info(self) -> TokenInfo:
        await self.token()  # the same error when the trust is gone
        return await self._tokens.info()


class KeystoneSwiftAuth:
    """clients/auth.py's Authenticator for a Swift region reached as the trust's user: the
    catalog's object-store endpoint, in the account of `account` (a project id) when given,
    e.g. the owner of an image shared with the user, else in the user's own."""

    def __init__(self, tokens: TrustTokens, region: str, account: str | None = None) -> None:
        self.tokens = tokens
        self.region = region
        self.account = account

    async def authenticate(self, http: aiohttp.ClientSession) -> swift.Credentials:
        info = await self.tokens.info()
        url = info.endpoint("object-store", self.region)
        if url is None:
            raise CopyFailed("region_not_available",
                             f"your catalog has no object store in {self.region}")
        if self.account is not None:
            url = url.replace(f"AUTH_{info.project_id}", f"AUTH_{self.account}")
        return swift.Credentials(url, await self.tokens.token())


class Keystone:
    def __init__(self, http: aiohttp.ClientSession, config: KeystoneSettings, *,
                 cache_size: int = 1024, cache_seconds: float = 300.0) -> None:
        self.http = http
        self.config = config
        self._service = _PluginTokens(self._password_plugin(), "xfer's service credentials")
        self._cache: OrderedDict[str, tuple[float, TokenInfo]] = OrderedDict()
        self._cache_size = cache_size
        self._cache_seconds = cache_seconds

    def _password_plugin(self, *, trust_id: str | None = None) -> v3.Password:
        """xfer's service user, scoped to its project, or to a trust when given."""
        if trust_id is not None:
            return v3.Password(auth_url=self.config.auth_url, username=self.config.user,
                               password=self.config.password,
                               user_domain_name=self.config.domain, trust_id=trust_id)
        return v3.Password(auth_url=self.config.auth_url, username=self.config.user,
                           password=self.config.password, user_domain_name=self.config.domain,
                           project_name=self.config.project,
                           project_domain_name=self.config.domain)

    async def service_token(self) -> str:
        return await self._service.token()

    async def service_user_id(self) -> str:
        return (await self._service.info()).user_id

    async def validate(self, user_token: str) -> TokenInfo:
        """What Keystone says about a caller's token; TokenInvalid when it is not valid."""
        key = hashlib.sha256(user_token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            self._cache.move_to_end(key)
            return cached[1]
        info = await self._validate(user_token, renew=True)
        lifetime = (info.expires_at - datetime.now(UTC)).total_seconds()
        self._cache[key] = (now + max(0.0, min(lifetime, self._cache_seconds)), info)
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return info

    async def _validate(self, user_token: str, *, renew: bool) -> TokenInfo:
        request = keystone.validate_token_request(self.config.auth_url,
                                                  await self.service_token(), user_token)
        reply = await exchange(self.http, keystone.SERVICE, request)
        if reply.status == 401 and renew:  # xfer's own token expired or was revoked
            self._service.invalidate()
            return await self._validate(user_token, renew=False)
        return keystone.parse_validated_token(request, reply)

    async def create_trust(self, user_token: str, user: TokenInfo, expires_at: datetime) -> str:
        """A trust from the caller to xfer's service user, for one copy; its id."""
        request = keystone.create_trust_request(self.config.auth_url, user_token, user,
                                                await self.service_user_id(), expires_at)
        return keystone.parse_created_trust(request, await exchange(
            self.http, keystone.SERVICE, request))

    def trust_tokens(self, trust_id: str) -> TrustTokens:
        return TrustTokens(_PluginTokens(self._password_plugin(trust_id=trust_id),
                                         "the copy's trust"))
