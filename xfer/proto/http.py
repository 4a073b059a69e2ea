"""The request/reply values shared by the sans-IO protocol modules and the one transport."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# Headers that carry a credential: never printed (a token in a log is a token given away).
SECRET_HEADERS = frozenset({"x-auth-token", "x-subject-token", "x-service-token", "x-auth-key",
                            "x-storage-token", "authorization"})


@dataclass(frozen=True)
class Request:
    """`url` is already percent-encoded and goes on the wire byte for byte: the builders quote
    every name themselves, and a client that normalised it again (removing `.` and `..`
    segments, unquoting escapes) would address another object than the one named."""

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, str] = field(default_factory=dict)
    body: bytes | bytearray | memoryview | None = None

    @property
    def path(self) -> str:
        """The URL path, for error messages (never the query, never a token)."""
        return urlsplit(self.url).path

    def __repr__(self) -> str:
        """Without secrets: credential headers hidden, the body (a password, a token request)
        only counted, the query left out."""
        headers = {name: "<hidden>" if name.lower() in SECRET_HEADERS else value
                   for name, value in self.headers.items()}
        body = "None" if self.body is None else f"<{len(self.body)} bytes>"
        return f"Request({self.method} {self.path}, headers={headers!r}, body={body})"


@dataclass(frozen=True)
class Reply:
    """A reply whose body has been read in full (small bodies only: JSON, manifests)."""

    status: int
    headers: Mapping[str, str]
    body: bytes = b""

    def header(self, name: str) -> str | None:
        # aiohttp's CIMultiDict is case-insensitive; plain dicts in tests may not be.
        value = self.headers.get(name)
        if value is None:
            lowered = name.lower()
            for key, candidate in self.headers.items():
                if key.lower() == lowered:
                    return candidate
        return value
