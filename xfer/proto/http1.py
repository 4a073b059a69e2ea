"""HTTP/1.1 message framing for the bulk data path, sans-IO: a request head from a Request, a
reply head parsed from bytes, and the chunked transfer coding undone incrementally.

Only what xfer's ranged GETs and streamed PUTs need (RFC 9112): one request at a time on a
connection, bodies framed by Content-Length or chunked, or ended by the connection's close.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from xfer.errors import XferError

# A reply head longer than this is not a Swift reply (Swift's are about 400 bytes).
MAX_HEAD_BYTES = 64 * 1024
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: .*)?")
_FORBIDDEN_IN_VALUES = re.compile(r"[\r\n\x00]")


class FramingError(XferError):
    """Bytes that are not the HTTP/1.1 this module reads (or would write)."""


@dataclass(frozen=True)
class Origin:
    scheme: str  # "http" or "https"
    host: str
    port: int


def origin_and_target(url: str, params: Mapping[str, str] | None = None) -> tuple[Origin, str]:
    """Pure: where a URL's request goes, and its request target (path and query) exactly as
    written: it is already percent-encoded (proto.http.Request)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FramingError(f"not an http(s) URL: {parts.scheme}://{parts.hostname}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = parts.path or "/"
    query = "&".join(q for q in (parts.query, urlencode(dict(params or {}))) if q)
    return Origin(parts.scheme, parts.hostname, port), target + (f"?{query}" if query else "")


def request_head(method: str, origin: Origin, target: str, headers: Mapping[str, str],
                 content_length: int | None = None) -> bytes:
    """Pure: the request line and headers, ending with the blank line. A header name that is
    not a token, or a value holding CR, LF or NUL (a header smuggled in), is refused."""
    default_port = 443 if origin.scheme == "https" else 80
    host = origin.host if ":" not in origin.host else f"[{origin.host}]"
    fields = {"Host": host if origin.port == default_port else f"{host}:{origin.port}"}
    fields.update(headers)
    if content_length is not None:
        fields["Content-Length"] = str(content_length)
    lines = [f"{method} {target} HTTP/1.1"]
    for name, value in fields.items():
        if not _TOKEN.fullmatch(name) or _FORBIDDEN_IN_VALUES.search(value):
            raise FramingError(f"header {name!r} cannot be sent as it is")
        lines.append(f"{name}: {value}")
    if _FORBIDDEN_IN_VALUES.search(target) or " " in target:
        raise FramingError("the request target holds a space, CR, LF or NUL")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass(frozen=True)
class ReplyHead:
    status: int
    headers: tuple[tuple[str, str], ...]  # in order, names as sent
    content_length: int | None  # None: chunked, or until the connection closes
    chunked: bool
    keep_alive: bool  # the connection may carry another request after this reply's body

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((value for key, value in self.headers if key.lower() == lowered), None)


def parse_reply_head(head: bytes, method: str) -> ReplyHead:
    """Pure: a reply head (without its blank line) -> status, headers and body framing."""
    lines = head.split(b"\r\n")
    status_line = _STATUS_LINE.fullmatch(lines[0])
    if status_line is None:
        raise FramingError(f"not an HTTP/1.x status line: {lines[0][:80]!r}")
    status = int(status_line[2])
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name.decode("latin-1")):
            raise FramingError(f"not a header line: {line[:80]!r}")
        headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    fields = {name.lower(): value for name, value in headers}
    connection = {token.strip().lower() for token in fields.get("connection", "").split(",")}
    keep_alive = status_line[1] == b"1" and "close" not in connection
    chunked = fields.get("transfer-encoding", "").strip().lower().endswith("chunked")
    length: int | None = None
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        length = 0
    elif chunked:
        length = None
    elif "content-length" in fields:
        text = fields["content-length"].strip()
        if not text.isdigit() or not text.isascii():
            raise FramingError(f"Content-Length {text!r} is not a number")
        length = int(text)
    else:
        keep_alive = False  # the body ends when the connection does
    return ReplyHead(status, tuple(headers), length, chunked and length is None, keep_alive)


class ChunkedDecoder:
    """The chunked transfer coding undone, fed any pieces of the wire bytes; `feed` returns
    the body bytes those pieces completed and what was left after the coding's end."""

    _SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,15})(;[^\r\n]*)?")

    def __init__(self) -> None:
        self._pending = b""  # bytes of a size line or a chunk's CRLF not yet whole
        self._left = 0  # body bytes of the current chunk still to come
        self._state = "size"  # size, data, data_end, trailers
        self.done = False

    def feed(self, data: bytes) -> tuple[list[bytes], bytes]:
        body: list[bytes] = []
        data = self._pending + data
        self._pending = b""
        while data and not self.done:
            if self._state == "data":
                piece, data = data[:self._left], data[self._left:]
                body.append(piece)
                self._left -= len(piece)
                if self._left == 0:
                    self._state = "data_end"
                continue
            if self._state == "data_end":  # the CRLF after a chunk's data
                if len(data) < 2:
                    self._pending = data
                    break
                if data[:2] != b"\r\n":
                    raise FramingError("a chunk did not end with CRLF")
                data, self._state = data[2:], "size"
                continue
            end = data.find(b"\r\n")
            if end < 0:
                if len(data) > 4096:
                    raise FramingError("a chunk size or trailer line longer than 4 KiB")
                self._pending = data
                break
            line, data = data[:end], data[end + 2:]
            self._line(line)
        return body, data if self.done else b""

    def _line(self, line: bytes) -> None:
        if self._state == "size":
            match = self._SIZE_LINE.fullmatch(line)
            if match is None:
                raise FramingError(f"not a chunk size line: {line[:40]!r}")
            self._left = int(match[1], 16)
            self._state = "data" if self._left else "trailers"
        elif not line:  # the blank line after the trailers (if any): the body's end
            self.done = True
