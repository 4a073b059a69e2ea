"""Token renewal in xfer.clients.keystone, on a clock the test moves: before expiry by a margin
of five minutes (or half a shorter life), and at once when a service refused the token."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from xfer.clients.keystone import KeystoneSettings, TrustTokens, account_url
from xfer.proto.keystone import TokenInfo

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def tokens(lifetime: timedelta, clock: Clock) -> tuple[TrustTokens, list[str]]:
    issued: list[str] = []

    async def issue() -> tuple[str, TokenInfo]:
        issued.append(f"token-{len(issued)}")
        info = TokenInfo("u", "alice", "p", "alpha", frozenset({"member"}), clock.now + lifetime,
                         (), "t1", clock.now)
        return issued[-1], info

    return TrustTokens("t1", issue, clock), issued


async def test_a_token_is_renewed_five_minutes_before_it_expires() -> None:
    clock = Clock()
    trust, issued = tokens(timedelta(hours=1), clock)
    assert await trust.token() == "token-0"
    clock.now = START + timedelta(minutes=54, seconds=59)
    assert await trust.token() == "token-0"
    clock.now = START + timedelta(minutes=55)
    assert await trust.token() == "token-1"
    assert (await trust.info()).expires_at == clock.now + timedelta(hours=1)
    assert issued == ["token-0", "token-1"]


async def test_a_short_lived_token_is_renewed_half_way_and_a_refused_one_at_once() -> None:
    clock = Clock()
    trust, issued = tokens(timedelta(minutes=4), clock)
    await trust.token()
    clock.now = START + timedelta(minutes=1, seconds=59)
    assert await trust.token() == "token-0"
    clock.now = START + timedelta(minutes=2)
    assert await trust.token() == "token-1"
    assert await trust.token(stale="token-0") == "token-1"  # already renewed by another
    assert await trust.token(stale="token-1") == "token-2"
    assert len(issued) == 3


def test_the_password_stays_out_of_the_settings_repr() -> None:
    settings = KeystoneSettings("http://127.0.0.1:5000/v3", "xfer", "pa55word", "service")
    assert "pa55word" not in repr(settings) and "xfer" in repr(settings)


def test_account_url_keeps_the_reseller_prefix() -> None:
    assert account_url("http://s:1/v1/AUTH_p1", "p1", "p2") == "http://s:1/v1/AUTH_p2"
    assert account_url("http://s:1/v1/KEY_p1/", "p1", "p2") == "http://s:1/v1/KEY_p2"
