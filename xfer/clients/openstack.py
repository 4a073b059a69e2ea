"""The OpenStack clients an image copy or search needs, made on one shared aiohttp session, so
that the layers above never hold a session themselves."""

from __future__ import annotations

import aiohttp

from xfer.clients.glance import GlanceClient, TokenSource
from xfer.clients.keystone import Keystone, KeystoneSettings, KeystoneSwiftAuth, UserTokens
from xfer.clients.swift import SwiftClient
from xfer.settings import RegionConfig, Settings


class OpenStackClients:
    def __init__(self, http: aiohttp.ClientSession, keystone: Keystone) -> None:
        self.http = http
        self.keystone = keystone

    @classmethod
    def from_settings(cls, settings: Settings, http: aiohttp.ClientSession
                      ) -> OpenStackClients | None:
        """None without XFER_KEYSTONE_URL: xfer then serves object copies only."""
        if not settings.keystone_enabled:
            return None
        keystone = Keystone(http, KeystoneSettings(
            settings.keystone_url, settings.keystone_user, settings.keystone_password,
            settings.keystone_project, settings.keystone_domain),
            cache_size=settings.token_cache_size)
        return cls(http, keystone)

    def glance(self, image_url: str, user_token: TokenSource, *,
               with_service_token: bool = False) -> GlanceClient:
        """A Glance client; `with_service_token`: xfer's own token goes along as
        X-Service-Token where Glance wants a service (adding a location)."""
        return GlanceClient(self.http, image_url, user_token,
                            self.keystone.service_token if with_service_token else None)

    def swift(self, tokens: UserTokens, region: str, account: str | None = None
              ) -> SwiftClient:
        """A region's Swift as the tokens' user, in `account` (a project id) when given."""
        return SwiftClient(self.http, RegionConfig(region, "", "", ""),
                           KeystoneSwiftAuth(tokens, region, account))
