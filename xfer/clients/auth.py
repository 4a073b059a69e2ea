"""Authentication, behind one seam: an Authenticator turns configured credentials into a
token and the storage URL to use it at. Tempauth (Swift v1) here; Keystone's (a service
token, or a user's trust) is clients/keystone.KeystoneSwiftAuth."""

from __future__ import annotations

from typing import Protocol

import aiohttp

from xfer.clients.transport import exchange
from xfer.proto import swift
from xfer.settings import RegionConfig


class Authenticator(Protocol):
    async def authenticate(self, http: aiohttp.ClientSession) -> swift.Credentials:
        """A fresh token; raises AuthError when the credentials are refused."""
        ...


class TempAuth:
    """Swift's v1 auth (tempauth): user and key in headers, token and storage URL back."""

    def __init__(self, region: RegionConfig) -> None:
        self.region = region

    async def authenticate(self, http: aiohttp.ClientSession) -> swift.Credentials:
        request = swift.auth_v1_request(self.region.auth_url, self.region.user, self.region.key)
        return swift.parse_auth_v1(request, await exchange(http, swift.SERVICE, request))
