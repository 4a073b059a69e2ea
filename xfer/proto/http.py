"""The request/reply values shared by the sans-IO protocol modules and the one transport."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from xfer.errors import RangeNotSatisfiable, RequestError

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


@dataclass(frozen=True)
class ByteRange:
    """Bytes [start, start + length) of a body of `size` bytes, as a Range header asked."""

    start: int
    length: int
    size: int

    @property
    def whole(self) -> bool:
        return self.start == 0 and self.length == self.size

    def content_range(self) -> str:
        return f"bytes {self.start}-{self.start + self.length - 1}/{self.size}"


_BYTE_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)", re.IGNORECASE)
MAX_RANGE_DIGITS = 20  # 10**20 bytes is beyond any object; longer numbers are garbage


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """Pure: a `Range` header against a body of `size` bytes (RFC 9110 14.1.2), one range.
    None: no header, the whole body. RequestError naming `Range` for a header that is not one
    byte range; RangeNotSatisfiable (one too) for one that starts at or past the end."""
    if header is None:
        return None
    match = _BYTE_RANGE.fullmatch(header.strip())
    if match is None:
        raise RequestError("Range", "must be one byte range: bytes=FIRST-LAST, bytes=FIRST- or "
                         "bytes=-SUFFIX (several ranges are not served)")
    first, last = match[1], match[2]
    if len(first) > MAX_RANGE_DIGITS or len(last) > MAX_RANGE_DIGITS or not (first or last):
        raise RequestError("Range", "must give a first byte, a last byte or a suffix length")
    if not first:  # bytes=-N: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(f"a suffix of {suffix} bytes of a {size}-byte body", size)
        length = min(suffix, size)
        return ByteRange(size - length, length, size)
    start = int(first)
    end = size - 1 if not last else int(last)
    if last and end < start:
        raise RequestError("Range", f"ends at byte {end}, before its first byte {start}")
    if start >= size:
        raise RangeNotSatisfiable(f"the range starts at byte {start} of a {size}-byte body",
                                  size)
    return ByteRange(start, min(end, size - 1) - start + 1, size)
