"""`xfer check`: the preflight an operator runs after deploying (or changing) xfer.

Each check says what it found and, when it fails, what to do; a check that needs another one
that failed is reported as not checked. The process exits 1 when any check failed.

    database    PostgreSQL answers at XFER_DATABASE_URL and has every migration
    keystone    answers at XFER_KEYSTONE_URL; xfer's service user gets a token, holds the
                `service` role (without it Keystone lets it validate no caller's token) and
                validates a token; trusts are enabled and it may list those naming it trustee
    catalog     an image-transfer endpoint in every region holding images, the home region's
                at this xfer's listen address and port
    front       when an image-only region (`RegionOne-via-xfer`) leads to this xfer, for
                glance-download through it: the region it fronts holds images
    swift       each region's /info answers (the catalog's object-store, and XFER_REGIONS')
    glance      each region's image endpoint answers

What it cannot check without a user: that Keystone lets a user's token create a trust for xfer
(`trust_refused` then says why, to the user).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import SplitResult, urlsplit

from xfer.clients.keystone import SERVICE_ROLE, Keystone
from xfer.clients.openstack import OpenStackClients
from xfer.clients.swift import SwiftClient
from xfer.clients.transport import exchange, http_session
from xfer.errors import RemoteError, ServiceCredentialsRefused, XferError
from xfer.jobs.db import pending_migrations
from xfer.proto import swift
from xfer.proto.http import Request
from xfer.proto.keystone import TokenInfo
from xfer.settings import Settings

XFER_SERVICE_TYPE = "image-transfer"
# clients.transport.http_session's aiohttp session, passed through untouched: only clients/
# imports aiohttp (tests/test_layers.py), so it is not named here.
Session = Any
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


@dataclass(frozen=True)
class Outcome:
    """One check: `ok` None when it could not run (what it needs failed)."""

    name: str
    ok: bool | None
    found: str
    fix: str = ""


class CheckFailed(XferError):
    """A check's failure: what was found, and the operator's fix. Never leaves this module."""

    def __init__(self, found: str, fix: str) -> None:
        super().__init__(found)
        self.found = found
        self.fix = fix


class Preflight:
    def __init__(self, settings: Settings, timeout: float) -> None:
        self.settings = settings
        self.timeout = timeout
        self.outcomes: list[Outcome] = []

    async def check(self, name: str, run: Callable[[], Awaitable[str]],
                    fix_when_down: str = "") -> bool:
        """Run one check within the timeout, record its outcome; True when it passed."""
        try:
            async with asyncio.timeout(self.timeout):
                found = await run()
        except CheckFailed as failure:
            self.outcomes.append(Outcome(name, False, failure.found, failure.fix))
        except TimeoutError:
            self.outcomes.append(Outcome(name, False, f"no answer within {self.timeout:g}s",
                                         fix_when_down))
        except XferError as exc:
            self.outcomes.append(Outcome(name, False, str(exc), fix_when_down))
        else:
            self.outcomes.append(Outcome(name, True, found))
            return True
        return False

    def skipped(self, name: str, needs: str) -> None:
        self.outcomes.append(Outcome(name, None, f"not checked: needs {needs}"))

    async def run(self) -> list[Outcome]:
        async with http_session(self.settings) as http:
            await self.check("database", self._database,
                             "start PostgreSQL, create xfer's database and user, and give "
                             "their URL as database_url (XFER_DATABASE_URL)")
            for name, config in self.settings.regions.items():
                client = SwiftClient(http, config)
                await self.check(f"swift {name} (XFER_REGIONS)", functools.partial(_limits, client),
                                 f"check region {name}'s auth_url, user and key in "
                                 f"XFER_REGIONS, and that its Swift proxy runs")
            openstack = OpenStackClients.from_settings(self.settings, http)
            if openstack is None:
                self.skipped("keystone", "keystone_url (XFER_KEYSTONE_URL); without it xfer "
                                         "copies objects only, open to anyone reaching it")
            else:
                await self._keystone(http, openstack.keystone)
        return self.outcomes

    async def _database(self) -> str:
        if not self.settings.database_url:
            raise CheckFailed("database_url (XFER_DATABASE_URL) is not set",
                              "create a PostgreSQL database for xfer and set its URL")
        pending = await pending_migrations(self.settings.database_url)
        if pending:
            raise CheckFailed(f"reachable, but migrations not applied: {', '.join(pending)}",
                              "run `xfer migrate` with this configuration (every xfer "
                              "process also migrates at start)")
        return "reachable, every migration applied"

    async def _keystone(self, http: Session, keystone: Keystone) -> None:
        url = self.settings.keystone_url
        reachable = await self.check("keystone", lambda: _answers(http, "keystone", url),
                                     f"keystone_url (XFER_KEYSTONE_URL) must be Keystone's v3 "
                                     f"endpoint, reachable from this host: {url}")
        if not reachable:
            self.skipped("keystone service user", "Keystone answering")
            return
        identity: list[TokenInfo] = []

        async def service_user() -> str:
            identity.append(await keystone.service_identity())
            return f"{self.settings.keystone_user!r} gets a token on project " \
                   f"{identity[0].project_name!r}"
        if not await self.check("keystone service user", service_user,
                                "check keystone_user, keystone_password, keystone_project "
                                "and keystone_domain (XFER_KEYSTONE_*)"):
            self.skipped("catalog", "the service user's token")
            return
        await self.check("keystone service role", lambda: self._role(keystone, identity[0]),
                         "see xfer's log and Keystone's for why it refused")
        await self.check("keystone trusts", lambda: self._trusts(keystone))
        await self.check("catalog", lambda: self._catalog(identity[0]))
        await self._front(identity[0])
        for region in identity[0].storage_regions():
            await self._region_services(http, identity[0], region)

    async def _role(self, keystone: Keystone, info: TokenInfo) -> str:
        user, project = self.settings.keystone_user, self.settings.keystone_project
        if SERVICE_ROLE not in info.roles:
            raise CheckFailed(
                f"{user!r} has roles {sorted(info.roles)} on {project!r}, not "
                f"{SERVICE_ROLE!r}: Keystone lets it validate no caller's token, and every "
                f"request gets 503 service_misconfigured",
                f"openstack role add --user {user} --project {project} {SERVICE_ROLE}")
        try:
            await keystone.validate(await keystone.service_token())
        except ServiceCredentialsRefused as exc:
            raise CheckFailed(str(exc), "see Keystone's policy for identity:validate_token"
                              ) from exc
        return f"{user!r} holds {SERVICE_ROLE!r} on {project!r} and validates tokens"

    async def _trusts(self, keystone: Keystone) -> str:
        """xfer works for a user through a trust the user's token creates (not checkable
        without a user); what xfer's own user does with trusts is: list those naming it
        trustee, to find one created just before a crash (jobs/trusts.py adopt_trust)."""
        user = self.settings.keystone_user
        try:
            trusts = await keystone.trustee_trusts()
        except RemoteError as exc:
            if exc.status == 404:
                raise CheckFailed(f"Keystone has no trusts API (GET {exc.path}: 404): no user "
                                  f"can delegate a copy to xfer",
                                  "enable trusts in keystone.conf ([trust] enabled = true)"
                                  ) from exc
            raise CheckFailed(f"Keystone refused {user!r} the list of trusts naming it "
                              f"trustee ({exc.status}): {exc}",
                              "let a trustee list its trusts (identity:list_trusts; "
                              "Keystone's default policy does)") from exc
        return f"trusts enabled; {len(trusts)} name {user!r} trustee (one per running copy)"

    async def _catalog(self, info: TokenInfo) -> str:
        regions = info.storage_regions()
        home = self.settings.home_region
        if home not in regions:
            raise CheckFailed(
                f"home_region {home!r} holds no images in the catalog (regions with an image "
                f"and an object-store endpoint: {', '.join(regions) or 'none'})",
                "set home_region (XFER_HOME_REGION) to the region this xfer serves")
        missing = [r for r in regions if info.endpoint(XFER_SERVICE_TYPE, r) is None]
        if missing:
            raise CheckFailed(
                f"no public {XFER_SERVICE_TYPE} endpoint in {', '.join(missing)}",
                "; ".join(f"openstack endpoint create --region {r} {XFER_SERVICE_TYPE} "
                          f"public http://HOST:PORT" for r in missing)
                + f" (first, once: openstack service create --name xfer {XFER_SERVICE_TYPE})")
        await self._home_endpoint(info.endpoint(XFER_SERVICE_TYPE, home) or "")
        return f"{XFER_SERVICE_TYPE} in {', '.join(regions)}; {home}'s is this xfer"

    async def _front(self, info: TokenInfo) -> None:
        """The Glance-compatible read endpoint (glance-download through xfer) is optional:
        set up when a region with an image endpoint only (`RegionOne-via-xfer`) leads to
        this xfer; then the region it fronts must hold images."""
        storage = info.storage_regions()
        fronts = [region for region in info.regions("image") if region not in storage
                  and await self._leads_here(info.endpoint("image", region) or "")]
        if not fronts:
            self.outcomes.append(Outcome(
                "front", None, "no image-only region's endpoint leads to this xfer: "
                "glance-download through xfer is not set up (optional; docs/operations.md)"))
            return

        async def fronted() -> str:
            region = self.settings.fronted_region
            if region not in storage:
                raise CheckFailed(
                    f"{', '.join(fronts)} lead(s) to this xfer, which fronts {region!r}: a "
                    f"region holding no images (those with images: {', '.join(storage)})",
                    "set front_region (XFER_FRONT_REGION; default home_region) to the region "
                    "whose images the front serves")
            return f"{', '.join(fronts)}: this xfer, serving {region}'s images to Glance"
        await self.check("front", fronted)

    async def _leads_here(self, url: str) -> bool:
        """Whether `url` names this xfer: its public_url's origin, or its listen address and
        port."""
        parts, s = urlsplit(url), self.settings
        if s.public_url:
            return _origin(url) == _origin(s.public_url)
        return _port(parts) == s.listen_port and (
            s.listen_host in WILDCARD_HOSTS
            or s.listen_host in await _addresses(parts.hostname or ""))

    async def _home_endpoint(self, url: str) -> None:
        s, home = self.settings, self.settings.home_region
        if s.public_url:
            if _origin(url) != _origin(s.public_url) or urlsplit(url).path.rstrip("/") != (
                    urlsplit(s.public_url).path.rstrip("/")):
                raise CheckFailed(
                    f"{home}'s {XFER_SERVICE_TYPE} endpoint {url} is not this xfer's "
                    f"public_url {s.public_url}",
                    f"make the endpoint {s.public_url} (openstack endpoint set --url ...), or "
                    f"set public_url (XFER_PUBLIC_URL) to where the proxy serves this xfer")
            return
        parts = urlsplit(url)
        port = _port(parts)
        fix = (f"make {home}'s {XFER_SERVICE_TYPE} endpoint {s.listen_scheme}://{s.listen_host}:"
               f"{s.listen_port} (openstack endpoint set --url ...), or set listen_host and "
               f"listen_port (XFER_LISTEN_HOST, XFER_LISTEN_PORT) to match it; behind a proxy, "
               f"set public_url (XFER_PUBLIC_URL) to the endpoint")
        if parts.path.rstrip("/").endswith("/v1"):
            raise CheckFailed(f"{home}'s {XFER_SERVICE_TYPE} endpoint {url} ends with /v1; "
                              f"xfer's paths start there", fix)
        if s.listen_scheme == "https" and parts.scheme != "https":
            raise CheckFailed(f"{home}'s {XFER_SERVICE_TYPE} endpoint {url} is not https; this "
                              f"xfer listens with TLS (tls_cert_file)", fix)
        if port != s.listen_port:
            raise CheckFailed(f"{home}'s {XFER_SERVICE_TYPE} endpoint {url} has port {port}; "
                              f"this xfer listens on {s.listen_port}", fix)
        if s.listen_host not in WILDCARD_HOSTS and s.listen_host not in await _addresses(
                parts.hostname or ""):
            raise CheckFailed(f"{home}'s {XFER_SERVICE_TYPE} endpoint {url} does not lead to "
                              f"{s.listen_host}, where this xfer listens", fix)

    async def _region_services(self, http: Session, info: TokenInfo, region: str) -> None:
        storage_url = info.endpoint("object-store", region) or ""
        await self.check(f"swift {region}",
                         lambda: _answers(http, "swift", swift.info_request(storage_url).url),
                         f"{region}'s object-store endpoint must answer GET /info from here")
        image_url = info.endpoint("image", region) or ""
        await self.check(f"glance {region}",
                         lambda: _answers(http, "glance", image_url.rstrip("/") + "/versions"),
                         f"{region}'s image endpoint must be reachable from here")


def _port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def _origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    return parts.scheme, (parts.hostname or "").lower(), _port(parts)


async def _answers(http: Session, service: str, url: str) -> str:
    reply = await exchange(http, service, Request("GET", url))
    if reply.status >= 400:
        raise CheckFailed(f"GET {url} answered {reply.status}",
                          "the service answers, with an error: see its log")
    return f"GET {url}: {reply.status}"


async def _limits(client: SwiftClient) -> str:
    limits = await client.limits()
    return f"authenticates, /info answers (max_file_size {limits.max_file_size})"


async def _addresses(host: str) -> set[str]:
    try:
        return {str(ipaddress.ip_address(host))}
    except ValueError:
        pass
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError:
        return set()
    return {str(address[4][0]) for address in found}


def print_outcomes(outcomes: list[Outcome], out: TextIO) -> int:
    """One line per check, its fix under a failure; 1 when any failed."""
    for outcome in outcomes:
        mark = {True: "ok  ", False: "FAIL", None: "--  "}[outcome.ok]
        print(f"{mark}  {outcome.name}: {outcome.found}", file=out)
        if outcome.ok is False and outcome.fix:
            print(f"      fix: {outcome.fix}", file=out)
    failed = sum(outcome.ok is False for outcome in outcomes)
    print(f"{failed} of {len(outcomes)} checks failed" if failed else "every check passed",
          file=out)
    return 1 if failed else 0
