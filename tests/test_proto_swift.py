"""Sans-IO Swift protocol: parsers and checks on hand-made replies."""

import json
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xfer.engine.failures import describe_failure
from xfer.errors import (
    AuthError,
    BodyRejected,
    IntegrityError,
    RemoteError,
    SegmentMismatch,
    SourceChanged,
)
from xfer.proto import swift
from xfer.proto.http import Reply, Request

CREDS = swift.Credentials("http://127.0.0.1:1/v1/AUTH_test", "tok")


def test_auth_v1_reply_gives_storage_url_and_token():
    request = swift.auth_v1_request("http://127.0.0.1:1/auth/v1.0", "test:tester", "testing")
    reply = Reply(200, {"X-Storage-Url": CREDS.storage_url, "X-Auth-Token": "abc"})
    creds = swift.parse_auth_v1(request, reply)
    assert creds.storage_url == CREDS.storage_url and creds.token == "abc"
    assert "abc" not in repr(creds)


def test_auth_refused_is_auth_error_with_txn_id():
    request = swift.auth_v1_request("http://127.0.0.1:1/auth/v1.0", "u", "k")
    with pytest.raises(AuthError) as error:
        swift.parse_auth_v1(request, Reply(401, {"X-Trans-Id": "tx123"}))
    assert error.value.txn_id == "tx123" and "GET /auth/v1.0 -> 401" in str(error.value)


def test_errors_name_method_path_status_and_txn():
    request = swift.head_object_request(CREDS, "images", "a b")
    with pytest.raises(RemoteError) as error:
        swift.parse_object_head(request, Reply(404, {"X-Trans-Id": "tx9"}))
    text = str(error.value)
    assert "HEAD /v1/AUTH_test/images/a%20b -> 404" in text and "tx9" in text
    assert not error.value.retryable


def test_head_distinguishes_plain_slo_and_dlo():
    request = swift.head_object_request(CREDS, "c", "o")
    plain = swift.parse_object_head(request, Reply(200, {"Content-Length": "5", "Etag": "abc"}))
    slo = swift.parse_object_head(request, Reply(200, {
        "Content-Length": "5", "Etag": '"def"', "X-Static-Large-Object": "True"}))
    dlo = swift.parse_object_head(request, Reply(200, {
        "Content-Length": "5", "Etag": '"x"', "X-Object-Manifest": "c_segments/o/"}))
    assert plain.kind is swift.ObjectKind.PLAIN and plain.etag == "abc"
    assert slo.kind is swift.ObjectKind.SLO and slo.etag == "def"
    assert dlo.kind is swift.ObjectKind.DLO and dlo.dlo_prefix == "c_segments/o/"


def test_ranged_reply_must_match_the_range_asked():
    request = swift.get_range_request(CREDS, "c", "o", 10, 5)
    assert request.headers["Range"] == "bytes=10-14"
    swift.check_ranged_reply(request, Reply(206, {"Content-Range": "bytes 10-14/100"}), 10, 5, 100)
    with pytest.raises(IntegrityError):
        swift.check_ranged_reply(request, Reply(206, {"Content-Range": "bytes 10-13/100"}), 10, 5,
                                 100)
    with pytest.raises(SourceChanged) as changed:
        swift.check_ranged_reply(request, Reply(206, {"Content-Range": "bytes 10-14/99"}), 10, 5,
                                 100)
    assert not changed.value.retryable
    with pytest.raises(RemoteError):
        swift.check_ranged_reply(request, Reply(200, {}), 10, 5, 100)


def test_a_pinned_ranged_get_says_a_replaced_object_changed():
    pinned = swift.get_range_request(CREDS, "c", "o", 0, 5, if_match="a" * 32)
    assert pinned.headers["If-Match"] == f'"{"a" * 32}"'
    with pytest.raises(SourceChanged):
        swift.check_ranged_reply(pinned, Reply(412, {}), 0, 5, 100)
    with pytest.raises(SegmentMismatch):  # an SLO whose segment was overwritten under it
        swift.check_ranged_reply(pinned, Reply(409, {}), 0, 5, 100)
    with pytest.raises(SourceChanged):  # ...a way for the source to have changed
        swift.check_ranged_reply(unpinned := swift.get_range_request(CREDS, "c", "o", 0, 5),
                                 Reply(409, {}), 0, 5, 100)
    failure = describe_failure("source", "read", "c/o in RegionOne",
                               SegmentMismatch("GET /v1/a/c/o: a segment ..."))
    assert failure.code == "source_changed" and "uploads it again" in failure.message
    assert "stops changing" not in failure.message  # waiting would not mend it
    assert "If-Match" not in unpinned.headers
    with pytest.raises(RemoteError):  # a 412 nobody asked for is the server's own error
        swift.check_ranged_reply(unpinned, Reply(412, {}), 0, 5, 100)


def test_slo_etag_is_md5_of_segment_md5s():
    import hashlib
    etags = ["a" * 32, "b" * 32]
    assert swift.slo_etag(etags) == hashlib.md5(("a" * 32 + "b" * 32).encode()).hexdigest()


def test_manifest_put_carries_heartbeat_and_slo_etag():
    segments = [swift.ManifestSegment("/c/s1", "a" * 32, 3)]
    request = swift.put_manifest_request(CREDS, "c", "o", segments)
    assert request.params == {"multipart-manifest": "put", "heartbeat": "on"}
    assert request.headers["ETag"] == swift.slo_etag(["a" * 32])
    assert json.loads(request.body) == [{"path": "/c/s1", "etag": "a" * 32, "size_bytes": 3}]


def test_heartbeat_body_carries_the_real_status():
    request = swift.put_manifest_request(CREDS, "c", "o", [])
    ok = Reply(202, {}, b' \r\n\r\n{"Response Status": "201 Created", "Etag": "\\"abc\\""}')
    assert swift.parse_manifest_put_reply(request, ok) == "abc"
    bad = Reply(202, {"X-Trans-Id": "tx1"},
                b' {"Response Status": "400 Bad Request", "Errors": [["/c/s1", "Etag Mismatch"]]}')
    with pytest.raises(RemoteError) as error:
        swift.parse_manifest_put_reply(request, bad)
    assert error.value.status == 400 and "Etag Mismatch" in str(error.value)
    with pytest.raises(IntegrityError):
        swift.parse_manifest_put_reply(request, Reply(202, {}, b'{"Response Status": "422 X"}'))


def test_put_reply_422_means_fetch_the_bytes_again():
    request = swift.put_object_request(CREDS, "c", "o", b"abc", "e" * 32)
    with pytest.raises(BodyRejected) as error:
        swift.check_put_reply(request, Reply(422, {}), "e" * 32)
    assert not error.value.retryable  # resending the same buffer cannot help


def test_retryable_statuses():
    request = Request("GET", "http://x/v1/a")
    for status, retryable in [(503, True), (429, True), (408, True), (498, True), (499, True),
                              (404, False), (400, False)]:
        with pytest.raises(RemoteError) as error:
            swift.raise_for_status(request, Reply(status, {}), 200)
        assert error.value.retryable is retryable


def test_info_gives_limits():
    request = swift.info_request(CREDS.storage_url)
    assert request.url == "http://127.0.0.1:1/info"
    body = json.dumps({"swift": {"max_file_size": 100},
                       "slo": {"max_manifest_segments": 7, "max_manifest_size": 9,
                               "min_segment_size": 1}}).encode()
    assert swift.parse_info(request, Reply(200, {}, body)) == swift.Limits(100, 7, 9, 1)


# Names as Swift allows them: any text but NUL; a container has no `/`.
NAME_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                    min_size=1)
TRICKY_PARTS = st.sampled_from(["", ".", "..", "%2e%2e", "%2E", "%", "?", "#", ";", "+", " "])
OBJECT_NAMES = NAME_TEXT | st.lists(TRICKY_PARTS | NAME_TEXT, min_size=2).map("/".join)
CONTAINER_NAMES = NAME_TEXT.filter(lambda name: "/" not in name) | TRICKY_PARTS.filter(bool)
URL_SAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%")


def sent_names(url: str) -> tuple[list[str], str]:
    """The raw path segments after the account, and the path as Swift reads it (unquoted)."""
    path = urlsplit(url).path
    account = urlsplit(CREDS.storage_url).path
    assert path.startswith(account + "/")
    return path[len(account) + 1:].split("/"), unquote(path)


@given(CONTAINER_NAMES, OBJECT_NAMES)
def test_object_urls_address_exactly_the_names_given(container: str, obj: str):
    for request in (swift.head_object_request(CREDS, container, obj),
                    swift.get_range_request(CREDS, container, obj, 0, 1),
                    swift.put_object_request(CREDS, container, obj, b"x", "e" * 32),
                    swift.put_stream_request(CREDS, container, obj, 1, None),
                    swift.delete_object_request(CREDS, container, obj),
                    swift.manifest_get_request(CREDS, container, obj),
                    swift.put_manifest_request(CREDS, container, obj, [])):
        segments, as_swift_reads_it = sent_names(request.url)
        # nothing on the way can resolve a segment away or split one in two
        assert not {".", ".."} & set(segments)
        assert all(set(segment) <= URL_SAFE for segment in segments)
        assert [unquote(segment) for segment in segments] == [container, *obj.split("/")]
        assert as_swift_reads_it == f"{urlsplit(CREDS.storage_url).path}/{container}/{obj}"



@given(CONTAINER_NAMES)
def test_container_urls_address_exactly_the_container_given(container: str):
    for request in (swift.put_container_request(CREDS, container),
                    swift.list_objects_request(CREDS, container, "p", "m")):
        segments, _ = sent_names(request.url)
        assert len(segments) == 1 and segments[0] not in (".", "..")
        assert unquote(segments[0]) == container


def test_dot_segments_are_sent_as_escapes():
    assert swift.object_url("http://h/v1/AUTH_a", "c", "dir/../victim.img") == (
        "http://h/v1/AUTH_a/c/dir/%2E%2E/victim.img")
    assert swift.object_url("http://h/v1/AUTH_a", "..", "./x/") == "http://h/v1/AUTH_a/%2E%2E/%2E/x/"
    assert swift.object_url("http://h/v1/AUTH_a", "c", "%2e%2e") == "http://h/v1/AUTH_a/c/%252e%252e"
