"""xfer.proto.keystone without a Keystone: token documents as Keystone 30 writes them, the
catalog, trusts, and tokens kept out of every repr and message."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from xfer.errors import AuthError, RemoteError, TokenInvalid, TrustExists, TrustRefused
from xfer.proto import keystone
from xfer.proto.http import Reply, Request

AUTH_URL = "http://127.0.0.1:5000/v3"
TOKEN = "gAAAAABsecret-token-value"
SERVICE_TOKEN = "gAAAAABservice-token-value"
PASSWORD = "s3cret-password"


def endpoint(interface: str, region: str, url: str) -> dict[str, str]:
    return {"id": "e", "interface": interface, "region_id": region, "region": region, "url": url}


def token_document(**overrides: object) -> dict[str, object]:
    document: dict[str, object] = {
        "methods": ["password"],
        "user": {"domain": {"id": "default", "name": "Default"}, "id": "u1", "name": "alice"},
        "project": {"domain": {"id": "default", "name": "Default"}, "id": "p1", "name": "alpha"},
        "roles": [{"id": "r1", "name": "reader"}, {"id": "r2", "name": "member"}],
        "expires_at": "2026-12-02T00:15:33.000000Z",
        "issued_at": "2026-12-01T23:15:33.000000Z",
        "catalog": [
            {"type": "object-store", "name": "swift", "endpoints": [
                endpoint("public", "RegionTwo", "http://127.0.0.1:8082/v1/AUTH_p1"),
                endpoint("public", "RegionOne", "http://127.0.0.1:8081/v1/AUTH_p1"),
                endpoint("internal", "RegionThree", "http://10.0.0.3/v1/AUTH_p1")]},
            {"type": "image", "name": "glance", "endpoints": [
                endpoint("public", "RegionOne", "http://127.0.0.1:9291"),
                endpoint("admin", "RegionOne", "http://127.0.0.1:9999")]},
        ],
    }
    document.update(overrides)
    return document


def reply(status: int, body: object = None, **headers: str) -> Reply:
    return Reply(status, headers, b"" if body is None else json.dumps(body).encode())


def issued(document: dict[str, object]) -> tuple[str, keystone.TokenInfo]:
    request = keystone.password_token_request(AUTH_URL, "xfer", PASSWORD, "service")
    return keystone.parse_issued_token(
        request, reply(201, {"token": document}, **{"X-Subject-Token": TOKEN}))


def test_a_token_document_becomes_token_info_with_its_catalog() -> None:
    token, info = issued(token_document())
    assert token == TOKEN
    assert (info.user_id, info.user_name, info.project_id, info.project_name) == (
        "u1", "alice", "p1", "alpha")
    assert info.roles == frozenset({"reader", "member"})
    assert info.expires_at == datetime(2026, 12, 2, 0, 15, 33, tzinfo=UTC)
    assert info.expires_at.utcoffset() is not None
    assert info.issued_at == datetime(2026, 12, 1, 23, 15, 33, tzinfo=UTC)
    assert info.trust_id is None
    assert len(info.catalog) == 5
    assert info.endpoint("object-store", "RegionOne") == "http://127.0.0.1:8081/v1/AUTH_p1"
    assert info.endpoint("image", "RegionOne") == "http://127.0.0.1:9291"
    assert info.endpoint("image", "RegionOne", "admin") == "http://127.0.0.1:9999"
    assert info.endpoint("image", "RegionTwo") is None
    assert info.endpoint("object-store", "RegionThree") is None  # internal only
    assert info.endpoint("object-store", "RegionThree", "internal") == "http://10.0.0.3/v1/AUTH_p1"
    assert info.regions("object-store") == ("RegionOne", "RegionTwo")  # public ones, sorted
    assert info.regions("image") == ("RegionOne",)
    assert info.regions("compute") == ()


def test_a_trust_scoped_token_says_its_trust_and_a_token_without_catalog_has_none() -> None:
    _, info = issued(token_document(**{"OS-TRUST:trust": {
        "id": "t1", "impersonation": True, "trustor_user": {"id": "u1"},
        "trustee_user": {"id": "x1"}}}))
    assert info.trust_id == "t1" and info.user_id == "u1"
    _, bare = issued(token_document(catalog=None))
    assert bare.catalog == () and bare.regions("image") == ()


def test_endpoints_with_only_the_legacy_region_field_are_read() -> None:
    catalog = [{"type": "image", "endpoints": [
        {"interface": "public", "region": "RegionOne", "url": "http://g"}]}]
    assert keystone.parse_catalog(catalog) == (
        keystone.Endpoint("image", "RegionOne", "public", "http://g"),)


def test_password_and_trust_token_requests() -> None:
    request = keystone.password_token_request(AUTH_URL + "/", "xfer", PASSWORD, "service")
    assert (request.method, request.url) == ("POST", f"{AUTH_URL}/auth/tokens")
    assert request.body is not None
    auth = json.loads(request.body)["auth"]
    assert auth["identity"]["password"]["user"] == {
        "name": "xfer", "domain": {"name": "Default"}, "password": PASSWORD}
    assert auth["scope"] == {"project": {"name": "service", "domain": {"name": "Default"}}}

    trust = keystone.trust_token_request(AUTH_URL, "xfer", PASSWORD, "t1", domain="Other")
    auth = json.loads(trust.body or b"")["auth"]
    assert auth["scope"] == {"OS-TRUST:trust": {"id": "t1"}}
    assert auth["identity"]["password"]["user"]["domain"] == {"name": "Other"}


def test_refused_credentials_are_auth_errors_and_other_statuses_remote_errors() -> None:
    request = keystone.password_token_request(AUTH_URL, "xfer", PASSWORD, "service")
    refused = reply(401, {"error": {"code": 401, "message": "The request you have made "
                                    "requires authentication.", "title": "Unauthorized"}})
    with pytest.raises(AuthError, match="requires authentication") as caught:
        keystone.parse_issued_token(request, refused)
    assert caught.value.status == 401
    with pytest.raises(RemoteError) as failed:
        keystone.parse_issued_token(request, reply(503, {"error": {"message": "busy"}}))
    assert failed.value.retryable and not isinstance(failed.value, AuthError)
    with pytest.raises(RemoteError, match="X-Subject-Token"):
        keystone.parse_issued_token(request, reply(201, {"token": token_document()}))


def test_validation_404_is_token_invalid_and_401_is_xfers_own_problem() -> None:
    request = keystone.validate_token_request(AUTH_URL, SERVICE_TOKEN, TOKEN)
    assert request.method == "GET" and request.url == f"{AUTH_URL}/auth/tokens"
    assert request.headers["X-Auth-Token"] == SERVICE_TOKEN
    assert request.headers["X-Subject-Token"] == TOKEN
    assert keystone.parse_validated_token(
        request, reply(200, {"token": token_document()})).user_name == "alice"
    not_found = reply(404, {"error": {"code": 404, "message": "Could not recognize Fernet token"}})
    with pytest.raises(TokenInvalid):
        keystone.parse_validated_token(request, not_found)
    with pytest.raises(AuthError, match="service token"):
        keystone.parse_validated_token(request, reply(401, {"error": {"message": "no"}}))
    unscoped = token_document()
    del unscoped["project"]
    with pytest.raises(TokenInvalid, match="not scoped to a project"):
        keystone.parse_validated_token(request, reply(200, {"token": unscoped}))


def test_a_trust_delegates_the_users_roles_on_its_project_with_impersonation() -> None:
    _, alice = issued(token_document())
    expires = datetime(2027, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)
    request = keystone.create_trust_request(AUTH_URL, TOKEN, alice, "x1", expires)
    assert (request.method, request.url) == ("POST", f"{AUTH_URL}/OS-TRUST/trusts")
    assert request.headers["X-Auth-Token"] == TOKEN
    assert json.loads(request.body or b"") == {"trust": {
        "trustor_user_id": "u1", "trustee_user_id": "x1", "project_id": "p1",
        "impersonation": True, "roles": [{"name": "member"}, {"name": "reader"}],
        "expires_at": "2027-01-02T03:04:05.600000Z"}}
    assert keystone.parse_created_trust(request, reply(201, {"trust": {"id": "t1"}})) == "t1"
    for status, message in ((403, "Delegated tokens cannot manage trusts"),
                            (404, "Could not find role: r9."), (401, "expired or was revoked")):
        with pytest.raises(TrustRefused, match=message) as refused:
            keystone.parse_created_trust(request, reply(status, {"error": {"message": message}}))
        # an AuthError: the web layer answers 403 trust_refused with its detail
        assert isinstance(refused.value, AuthError) and refused.value.status == status
        assert message in refused.value.detail


def test_no_token_or_password_in_a_request_repr_or_any_error() -> None:
    _, alice = issued(token_document())
    requests: list[Request] = [
        keystone.password_token_request(AUTH_URL, "xfer", PASSWORD, "service"),
        keystone.trust_token_request(AUTH_URL, "xfer", PASSWORD, "t1"),
        keystone.validate_token_request(AUTH_URL, SERVICE_TOKEN, TOKEN),
        keystone.create_trust_request(AUTH_URL, TOKEN, alice, "x1", alice.expires_at),
    ]
    texts = [repr(request) for request in requests] + [repr(alice), str(alice)]
    for request in requests:
        for status in (400, 401, 403, 404, 500):
            for parse in (keystone.parse_issued_token, keystone.parse_validated_token,
                          keystone.parse_created_trust):
                try:
                    parse(request, reply(status, {"error": {"message": "refused"}}))
                except Exception as exc:
                    texts.append(str(exc))
                    texts.append(repr(exc))
    assert len(texts) > 60
    for text in texts:
        for secret in (TOKEN, SERVICE_TOKEN, PASSWORD):
            assert secret not in text
    assert "<hidden>" in repr(requests[2]) and "bytes>" in repr(requests[0])


def trust_document(trust_id: str, **overrides: object) -> dict[str, object]:
    document: dict[str, object] = {
        "id": trust_id, "trustor_user_id": "u1", "trustee_user_id": "x1", "project_id": "p1",
        "impersonation": True, "expires_at": "2027-01-02T03:04:05.000000Z",
        "remaining_uses": None, "redelegation_count": 0}
    document.update(overrides)
    return document


def test_keystone_holding_a_trust_with_that_expiry_is_trust_exists() -> None:
    _, alice = issued(token_document())
    request = keystone.create_trust_request(AUTH_URL, TOKEN, alice, "x1", alice.expires_at)
    message = "Conflict occurred attempting to store trust - Duplicate entry found with ID t9."
    with pytest.raises(TrustExists) as exists:
        keystone.parse_created_trust(request, reply(409, {"error": {"message": message}}))
    assert not isinstance(exists.value, AuthError) and exists.value.status == 409


def test_the_trustees_trusts_are_listed_with_their_expiries() -> None:
    request = keystone.trustee_trusts_request(AUTH_URL, SERVICE_TOKEN, "x1")
    assert (request.method, request.url, dict(request.params or {})) == (
        "GET", f"{AUTH_URL}/OS-TRUST/trusts", {"trustee_user_id": "x1"})
    listed = keystone.parse_trusts(request, reply(200, {"trusts": [
        trust_document("t1"), trust_document("t2", expires_at=None, project_id=None,
                                              impersonation=False)]}))
    assert listed == (
        keystone.Trust("t1", "u1", "x1", "p1", True, datetime(2027, 1, 2, 3, 4, 5, tzinfo=UTC)),
        keystone.Trust("t2", "u1", "x1", None, False, None))
    for status, error in ((401, AuthError), (403, AuthError), (500, RemoteError)):
        with pytest.raises(error):
            keystone.parse_trusts(request, reply(status, {"error": {"message": "no"}}))
    with pytest.raises(RemoteError, match="unreadable trusts"):
        keystone.parse_trusts(request, reply(200, {"trusts": [{"id": "t3"}]}))


def test_a_trust_is_deleted_or_was_gone_already() -> None:
    request = keystone.delete_trust_request(AUTH_URL, TOKEN, "t1")
    assert (request.method, request.url, request.headers["X-Auth-Token"]) == (
        "DELETE", f"{AUTH_URL}/OS-TRUST/trusts/t1", TOKEN)
    assert keystone.parse_deleted_trust(request, reply(204)) is True
    assert keystone.parse_deleted_trust(request, reply(404, {"error": {"message": "gone"}})
                                        ) is False
    with pytest.raises(AuthError):
        keystone.parse_deleted_trust(request, reply(403, {"error": {"message": "policy"}}))
    with pytest.raises(RemoteError):
        keystone.parse_deleted_trust(request, reply(503))
