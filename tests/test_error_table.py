"""One table from error class to HTTP status and code (xfer/web/errors.py): it names every
error class the web layer can meet, and answers the cases that matter as the API promises.
Pure: no service, no cloud."""

from __future__ import annotations

import importlib
import inspect
import logging
import pkgutil
import re
from pathlib import Path

import pytest

import xfer
from xfer import errors
from xfer.errors import (
    AuthError,
    CopyFailed,
    DatabaseUnavailable,
    ErrorCode,
    FrontRefused,
    RangeNotSatisfiable,
    RemoteError,
    RequestError,
    ServiceCredentialsRefused,
    TokenInvalid,
    TransportError,
    TrustExists,
    TrustRefused,
    UnsupportedStore,
    XferError,
)
from xfer.jobs.store import IdempotencyConflict
from xfer.proto import glance, keystone, swift
from xfer.web import errors as web_errors
from xfer.web.errors import ANSWERS, SERVICE_FAILED, reply_of

# Layers the web layer may import (tests/test_layers.py): the classes it can meet.
BELOW_WEB = ("errors", "settings", "logs", "proto", "clients", "engine", "images", "jobs", "web")


def error_classes() -> set[type[XferError]]:
    for module in pkgutil.walk_packages(xfer.__path__, "xfer."):
        if module.name.split(".")[1] in BELOW_WEB:
            importlib.import_module(module.name)
    found: set[type[XferError]] = set()
    pending: list[type[XferError]] = [XferError]
    while pending:
        kind = pending.pop()
        found.add(kind)
        pending.extend(kind.__subclasses__())
    return {kind for kind in found if kind.__module__.split(".")[1] in BELOW_WEB}


def test_every_error_class_has_its_own_entry() -> None:
    """A new error class fails here until someone decides what a client is told of it."""
    classes = error_classes()
    assert {kind for kind in classes if kind.__module__ == "xfer.errors"} == {
        kind for _, kind in inspect.getmembers(errors, inspect.isclass)
        if issubclass(kind, XferError)}
    assert sorted(kind.__qualname__ for kind in classes - set(ANSWERS)) == []


def test_every_service_that_can_fail_has_an_answer() -> None:
    assert set(SERVICE_FAILED) == {glance.SERVICE, keystone.SERVICE, swift.SERVICE}


def reply(exc: XferError) -> tuple[int, ErrorCode, str, str | None]:
    answered = reply_of(exc, "r1")
    return answered.status, answered.code, answered.message, answered.field


def keystone_error(kind: type[RemoteError], status: int, detail: str = "") -> RemoteError:
    return kind("keystone", "POST", "/v3/auth/tokens", status, None, detail)


def test_xfers_own_credentials_refused_is_the_operators_503_not_a_refused_trust() -> None:
    """Issue 18: the user must not read "Keystone refused the trust" when xfer's own service
    password (or role) is wrong; a trust Keystone refuses the user stays a 403."""
    status, code, message, _ = reply(keystone_error(ServiceCredentialsRefused, 401,
                                                    "refused xfer's service user"))
    assert (status, code) == (503, ErrorCode.SERVICE_MISCONFIGURED)
    assert "operator" in message and "trust" not in message
    status, code, message, _ = reply(keystone_error(TrustRefused, 403, "roles you lack"))
    assert (status, code) == (403, ErrorCode.TRUST_REFUSED)
    assert message == "Keystone refused the trust xfer needs to copy as you: roles you lack"


def test_keystone_answering_an_error_is_told_apart_from_keystone_not_answering() -> None:
    """Issue 19: a 5xx from Keystone is an answer; the reply says which status it was."""
    status, code, message, _ = reply(keystone_error(RemoteError, 502))
    assert (status, code) == (503, ErrorCode.KEYSTONE_UNAVAILABLE)
    assert message == ("Keystone answered xfer with HTTP 502 to POST /v3/auth/tokens; "
                       "try again shortly")
    status, code, message, _ = reply(TransportError("keystone", "GET", "/v3", "refused"))
    assert (status, code) == (503, ErrorCode.KEYSTONE_UNAVAILABLE)
    assert message == "Keystone did not answer xfer; try again shortly"


@pytest.mark.parametrize("exc, status, code, field", [
    (RequestError("source.region", "no such region"), 400, ErrorCode.INVALID_REQUEST,
     "source.region"),
    (IdempotencyConflict("used for another request"), 409, ErrorCode.IDEMPOTENCY_CONFLICT,
     "Idempotency-Key"),
    (errors.NotCancellable("succeeded"), 409, ErrorCode.NOT_CANCELLABLE, "state"),
    (TokenInvalid("expired"), 401, ErrorCode.UNAUTHORIZED, "X-Auth-Token"),
    (DatabaseUnavailable("down"), 503, ErrorCode.DATABASE_UNAVAILABLE, None),
    (keystone_error(RemoteError, 500), 503, ErrorCode.KEYSTONE_UNAVAILABLE, None),
    (TransportError("keystone", "GET", "/v3", "refused"), 503,
     ErrorCode.KEYSTONE_UNAVAILABLE, None),
    (keystone_error(AuthError, 403), 503, ErrorCode.KEYSTONE_UNAVAILABLE, None),
    (keystone_error(TrustExists, 409), 503, ErrorCode.KEYSTONE_UNAVAILABLE, None),
    (RemoteError("glance", "GET", "/v2/images/x", 500, None), 502, ErrorCode.GLANCE_FAILED,
     None),
    (TransportError("swift", "GET", "/v1/a/c/o", "reset"), 502, ErrorCode.SWIFT_FAILED, None),
    (FrontRefused(ErrorCode.IMAGE_NOT_ACTIVE, "queued"), 409, ErrorCode.IMAGE_NOT_ACTIVE, None),
    (FrontRefused(ErrorCode.REGION_NOT_AVAILABLE, "no"), 404, ErrorCode.REGION_NOT_AVAILABLE,
     None),
    (UnsupportedStore("file store"), 501, ErrorCode.UNSUPPORTED_STORE, None),
    (CopyFailed(ErrorCode.SOURCE_FORBIDDEN, "no"), 403, ErrorCode.SOURCE_FORBIDDEN, None),
    (CopyFailed(ErrorCode.CHECKSUM_MISMATCH, "no"), 502, ErrorCode.CHECKSUM_MISMATCH, None),
    (RangeNotSatisfiable("past the end", 10), 416, ErrorCode.RANGE_NOT_SATISFIABLE, "Range"),
])
def test_errors_are_answered_by_the_table(exc: XferError, status: int, code: ErrorCode,
                                          field: str | None) -> None:
    answered_status, answered_code, _, answered_field = reply(exc)
    assert (answered_status, answered_code, answered_field) == (status, code, field)


def test_headers_and_hidden_details() -> None:
    assert reply_of(RangeNotSatisfiable("past the end", 10), "r").headers == {
        "Content-Range": "bytes */10"}
    assert reply_of(DatabaseUnavailable("pg at 10.0.0.5 refused"), "r").headers == {
        "Retry-After": str(web_errors.RETRY_AFTER_SECONDS)}
    # an operator's detail (addresses, the service user) goes to the log, not to the client
    assert "10.0.0.5" not in reply(DatabaseUnavailable("pg at 10.0.0.5 refused"))[2]
    internal = reply_of(errors.IntegrityError("a bug's detail"), "req-7")
    assert (internal.status, internal.code) == (500, ErrorCode.INTERNAL_ERROR)
    assert "req-7" in internal.message and "detail" not in internal.message


def test_log_levels_say_whose_problem_it_is() -> None:
    """A client's mistake is information; Keystone away a warning; xfer misconfigured an
    error (someone must act)."""
    assert web_errors.answer_of(RequestError("x", "y")).log_level == logging.INFO
    assert web_errors.answer_of(DatabaseUnavailable("x")).log_level == logging.WARNING
    assert web_errors.answer_of(keystone_error(ServiceCredentialsRefused, 401)
                                ).log_level == logging.ERROR


def test_every_code_the_sql_writes_is_an_error_code() -> None:
    """Codes come from CopyFailed (an ErrorCode, as mypy holds it) or from SQL literals."""
    queries = (Path(__file__).resolve().parents[1] / "sql" / "queries.sql").read_text()
    written = set(re.findall(r"error_code = '([a-z_]+)'", queries))
    assert written and written <= {code.value for code in ErrorCode}
