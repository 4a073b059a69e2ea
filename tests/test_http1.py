"""Sans-IO HTTP/1.1 framing of the bulk data path (proto/http1.py): request heads, reply heads,
the chunked coding undone over any split of the wire bytes."""

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xfer.proto.http1 import (
    ChunkedDecoder,
    FramingError,
    Origin,
    origin_and_target,
    parse_reply_head,
    request_head,
)


def test_the_target_is_sent_exactly_as_written_with_the_host_of_its_origin():
    origin, target = origin_and_target("http://127.0.0.1:8080/v1/AUTH_a/c/dir/..%2Fo%41?x=1")
    assert origin == Origin("http", "127.0.0.1", 8080)
    assert target == "/v1/AUTH_a/c/dir/..%2Fo%41?x=1"  # no `..` resolved, no escape undone
    head = request_head("GET", origin, target, {"Range": "bytes=0-9"})
    assert head == (b"GET /v1/AUTH_a/c/dir/..%2Fo%41?x=1 HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"
                    b"Range: bytes=0-9\r\n\r\n")


def test_default_ports_query_parameters_and_content_length():
    origin, target = origin_and_target("https://swift.example/v1/a/c/o", {"multipart": "get"})
    assert origin == Origin("https", "swift.example", 443) and target == "/v1/a/c/o?multipart=get"
    head = request_head("PUT", origin, target, {}, content_length=5)
    assert b"Host: swift.example\r\n" in head and b"Content-Length: 5\r\n" in head


@pytest.mark.parametrize("name, value", [
    ("X-Object-Meta-A", "x\r\nX-Injected: 1"),
    ("X-Object-Meta-A", "x\nY"),
    ("Bad Name", "v"),
    ("X-A:", "v"),
])
def test_a_header_that_would_smuggle_another_is_refused(name: str, value: str):
    with pytest.raises(FramingError):
        request_head("GET", Origin("http", "h", 80), "/", {name: value})


def test_a_url_that_is_not_http_is_refused():
    with pytest.raises(FramingError):
        origin_and_target("ftp://h/x")


def test_reply_heads_say_how_their_body_is_framed():
    plain = parse_reply_head(b"HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n"
                             b"Content-Range: bytes 0-9/20\r\nX-Trans-Id: tx1", "GET")
    assert (plain.status, plain.content_length, plain.chunked, plain.keep_alive) == (
        206, 10, False, True)
    assert plain.header("content-range") == "bytes 0-9/20" and plain.header("x-trans-id") == "tx1"
    chunked = parse_reply_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", "GET")
    assert chunked.chunked and chunked.content_length is None and chunked.keep_alive
    closing = parse_reply_head(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2",
                               "GET")
    assert not closing.keep_alive
    until_close = parse_reply_head(b"HTTP/1.0 200 OK", "GET")
    assert until_close.content_length is None and not until_close.keep_alive
    head = parse_reply_head(b"HTTP/1.1 200 OK\r\nContent-Length: 99", "HEAD")
    assert head.content_length == 0 and head.keep_alive


@pytest.mark.parametrize("head", [
    b"HTTP/2 200 OK",
    b"ICY 200 OK",
    b"HTTP/1.1 20 OK",
    b"HTTP/1.1 200 OK\r\nno colon here",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1e3",
])
def test_a_broken_reply_head_is_a_framing_error(head: bytes):
    with pytest.raises(FramingError):
        parse_reply_head(head, "GET")


def chunked(body: bytes, sizes: list[int]) -> bytes:
    wire, at = b"", 0
    for size in sizes:
        piece = body[at:at + size]
        if not piece:
            break
        wire += b"%x;ext=1\r\n" % len(piece) + piece + b"\r\n"
        at += len(piece)
    wire += b"%x\r\n" % len(body[at:]) + body[at:] + b"\r\n" if body[at:] else b""
    return wire + b"0\r\nX-Trailer: t\r\n\r\n"


@settings(max_examples=200, deadline=None)
@given(body=st.binary(max_size=3000), sizes=st.lists(st.integers(1, 700), max_size=8),
       cuts=st.lists(st.integers(0, 6000), max_size=12), after=st.binary(max_size=20))
def test_the_chunked_coding_is_undone_over_any_split_of_the_wire(
        body: bytes, sizes: list[int], cuts: list[int], after: bytes):
    wire = chunked(body, sizes) + after
    decoder, decoded, rest = ChunkedDecoder(), b"", b""
    edges = sorted({0, len(wire), *(cut for cut in cuts if cut < len(wire))})
    for start, end in itertools.pairwise(edges):
        pieces, left = decoder.feed(wire[start:end])
        decoded += b"".join(pieces)
        if decoder.done:
            rest = left + wire[end:]
            break
    assert decoder.done and decoded == body and rest == after


def test_a_broken_chunk_is_a_framing_error():
    with pytest.raises(FramingError):
        ChunkedDecoder().feed(b"zz\r\n")
    with pytest.raises(FramingError):
        ChunkedDecoder().feed(b"2\r\nabXY")
