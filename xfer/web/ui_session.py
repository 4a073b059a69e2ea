"""The web view's sign-in: a Keystone token in a session cookie, and the CSRF token of its forms.

A browser cannot send X-Auth-Token with a link or an EventSource, so the web view keeps the
user's Keystone token in its session: aiohttp-session's EncryptedCookieStorage (Fernet:
AES-128-CBC and an HMAC-SHA256 over it), so the cookie is both unreadable and unforgeable
without XFER_UI_SESSION_KEY; HttpOnly (no script of the page reads it), SameSite=Strict (no
other site's page sends it), its path /ui/. The token is never written into a page.

Each request of the web view turns the session's token into the same Caller the REST API gets
from X-Auth-Token (auth.caller_of_token: validated by Keystone, cached), so the API's policy and
tenancy apply unchanged. Every POST carries the session's CSRF token in its form (`csrf`),
compared in constant time; the sign-in form too (the session then starts afresh, with a new
CSRF token, so one fixed before sign-in is worth nothing after it).
"""

from __future__ import annotations

import hmac
import logging
import secrets
import warnings
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web
from aiohttp_session import Session, get_session, new_session, session_middleware
from aiohttp_session.cookie_storage import EncryptedCookieStorage
from cryptography.fernet import Fernet

from xfer.errors import ConfigError, TokenInvalid
from xfer.proto import keystone
from xfer.proto.http import Request
from xfer.settings import Settings
from xfer.web.auth import CALLER, KEYSTONE, UI_PREFIX, Caller, caller_of_token

log = logging.getLogger(__name__)
# aiohttp-session 2.12 keys the request with strings (request["aiohttp_session"]), which
# aiohttp warns about on every request: its own choice, nothing to act on here.
warnings.filterwarnings("ignore", category=web.NotAppKeyWarning, module="aiohttp_session")
COOKIE_NAME = "xfer_ui"
TOKEN, CSRF, FLASH = "token", "csrf", "flash"
MAX_FIELD_CHARS = 512  # a user name, password or secret longer than this is no such thing
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def session_key(settings: Settings) -> Fernet:
    """XFER_UI_SESSION_KEY, or a key of this process only (said in the log)."""
    if not settings.ui_session_key:
        log.warning("XFER_UI_SESSION_KEY is not set: the web view's sessions use a key made "
                    "at start-up, so they end when this process does and are not shared with "
                    "another xfer behind the same address")
        return Fernet(Fernet.generate_key())
    try:
        return Fernet(settings.ui_session_key)
    except ValueError:
        raise ConfigError("XFER_UI_SESSION_KEY must be a Fernet key: 32 bytes in url-safe "
                          "base64 (44 characters)") from None


def install_sessions(app: web.Application, settings: Settings) -> None:
    """A middleware giving the web view's requests (and only those) their session."""
    storage = EncryptedCookieStorage(
        session_key(settings), cookie_name=COOKIE_NAME, path=UI_PREFIX, httponly=True,
        samesite="Strict", secure=settings.ui_cookie_secure or settings.listen_scheme == "https",
        max_age=int(settings.ui_session_hours * 3600))
    sessions = session_middleware(storage)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(UI_PREFIX):
            return await handler(request)
        return await sessions(request, handler)

    app.middlewares.append(middleware)


async def csrf_token(request: web.Request) -> str:
    """The session's CSRF token, made the first time a form needs it."""
    session = await get_session(request)
    if CSRF not in session:
        session[CSRF] = secrets.token_urlsafe(32)
    return str(session[CSRF])


async def checked_form(request: web.Request) -> Mapping[str, str]:
    """The POSTed form, when it carries the session's CSRF token; 403 otherwise."""
    form = await request.post()
    session = await get_session(request)
    sent, expected = form.get(CSRF), session.get(CSRF)
    if not (isinstance(sent, str) and isinstance(expected, str)
            and hmac.compare_digest(sent.encode(), expected.encode())):
        log.warning("refused a web view POST to %s without its session's CSRF token",
                    request.path)
        raise web.HTTPForbidden(reason="this form is stale or was not sent by xfer's own page: "
                                     "reload the page and try again")
    return {name: value for name, value in form.items() if isinstance(value, str)}


async def flash(request: web.Request, message: str) -> None:
    """A sentence for the next page shown (after a redirect)."""
    (await get_session(request))[FLASH] = message


async def take_flash(request: web.Request) -> str | None:
    session = await get_session(request)
    message = session.pop(FLASH, None)
    return message if isinstance(message, str) else None


async def signed_in(request: web.Request) -> Caller | None:
    """The session's caller, set on the request as the API's middleware sets it (so that
    auth.authorize and the handlers' tenancy apply); None: not signed in, or the token
    ended (the session is then ended too)."""
    session = await get_session(request)
    token = session.get(TOKEN)
    if not isinstance(token, str):
        return None
    try:
        caller = await caller_of_token(request, token)
    except TokenInvalid:
        session.invalidate()
        return None
    request[CALLER] = caller
    return caller


async def require_signed_in(request: web.Request) -> Caller:
    caller = await signed_in(request)
    if caller is None:
        raise web.HTTPSeeOther(f"{UI_PREFIX}login")
    return caller


def sign_in_request(settings: Settings, form: Mapping[str, str]) -> Request:
    """Keystone's token request for the sign-in form: an application credential (id and
    secret) or a user's password on a project (names, in one domain)."""
    def field(name: str) -> str:
        return form.get(name, "").strip()[:MAX_FIELD_CHARS]

    auth_url = settings.keystone_url
    if field("credential_id"):
        return keystone.application_credential_token_request(
            auth_url, field("credential_id"), form.get("secret", "")[:MAX_FIELD_CHARS])
    return keystone.password_token_request(
        auth_url, field("user"), form.get("password", "")[:MAX_FIELD_CHARS],
        field("project"), field("domain") or "Default")


async def sign_in(request: web.Request, settings: Settings, form: Mapping[str, str]) -> str:
    """A new session holding the user's token; returns the user's name. TokenInvalid when
    Keystone refuses."""
    token, info = await request.app[KEYSTONE].user_token(sign_in_request(settings, form))
    session: Session = await new_session(request)
    session[TOKEN] = token
    session[CSRF] = secrets.token_urlsafe(32)
    log.info("web view: %s signed in on project %s", info.user_id, info.project_id)
    return info.user_name


async def sign_out(request: web.Request) -> None:
    (await get_session(request)).invalidate()
