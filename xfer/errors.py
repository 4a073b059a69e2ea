"""Every error xfer raises on purpose descends from one root.

    XferError
    ├── ConfigError          a setting is missing or invalid (start-up stops)
    ├── RequestError         a job request is malformed; names the field (API answers 4xx)
    │   └── RangeNotSatisfiable  a Range starts past the end of the body (API answers 416)
    ├── IdempotencyConflict  (jobs/store) the Idempotency-Key was used for another request
    ├── NotCancellable       the job has ended: there is nothing to cancel
    ├── RemoteError          a service answered with an error status; keeps service, method,
    │   │                    path, status and Swift's transaction id
    │   ├── AuthError        authentication refused (401/403 on the auth endpoint)
    │   │   ├── TrustRefused     Keystone would not create the trust xfer acts for a user
    │   │   │                    through (web answers 403 trust_refused)
    │   │   └── ServiceCredentialsRefused  Keystone refused xfer's own service user: the
    │   │                        operator's configuration, not the caller (web answers 503
    │   │                        service_misconfigured)
    │   └── TrustExists      Keystone holds a trust with the same trustor, project and expiry
    ├── TokenInvalid         the caller's token is missing, invalid or expired (API answers 401)
    ├── TokenRefused         (clients/swift) a 401 to a token that may have expired: the
    │                        client authenticates once more, the error never leaves it
    ├── TransportError       no usable answer: connection refused/reset, timeout
    │   └── UntrustedCertificate  the server's TLS certificate (or name) does not verify
    │                        against xfer's CAs (XFER_CA_FILE): not retried (web answers 503
    │                        service_misconfigured)
    ├── FramingError         (proto/http1) bytes that are not the HTTP/1.1 the bulk data path
    │                        reads or writes; its client raises a TransportError instead
    ├── LinkLost             (clients/bulk_link) a bulk connection failed or stalled; its
    │                        client raises a TransportError instead
    ├── IntegrityError       bytes are not what was asked or promised: Content-Range, length,
    │   │                    ETag or checksum mismatch
    │   └── BodyRejected     Swift refused a PUT body whose MD5 differs from its ETag (422)
    ├── SourceChanged        the source is no longer the version seen at the start (a ranged
    │   │                    GET's If-Match failed, or its size or ETag changed)
    │   └── SegmentMismatch  a segment of an SLO no longer matches its manifest (Swift's 409):
    │                        replaced now, or long ago; retrying cannot tell which
    ├── RetryBudgetExhausted (engine/retry) the copy's retries are spent
    ├── DatabaseUnavailable  PostgreSQL cannot be reached or dropped the connection (the API
    │                        answers 503; the worker waits and keeps what copies wrote)
    ├── InvalidTransition    (jobs/states) a job state change the table forbids: a bug
    ├── LeaseLost            (jobs/worker) another worker holds the job now: stop copying it
    ├── LeaseExpiring        (jobs/worker) the lease could not be renewed in time: stop
    │                        copying, keeping what was written
    ├── CancelRequested      (jobs/worker) a user cancelled the running job
    ├── DevcloudError        (dev/devcloud) the local cloud could not start or stop
    ├── CheckFailed          (check) a preflight check of `xfer check` found a problem;
    │                        carries the operator's fix
    └── CopyFailed           a copy ended in failure; carries the job's error code and a
        │                    sentence a user can act on. The image flow's, with fixed codes:
        ├── ImageNotFound        source_image_not_found: no such image, or not visible to the user
        ├── ImageNotActive       source_image_not_active: the source image has no data to copy yet
        ├── TargetForbidden      target_forbidden: the target Glance refused the user (403)
        ├── QuotaExceeded        target_quota_exceeded: a Glance quota or limit (413)
        ├── ImageRejected        target_image_rejected: Glance refused the image record (400),
        │                        or would refuse it (4-byte UTF-8 in a name, tag or property)
        ├── UnsupportedStore     unsupported_store: the source image is not in a multi-tenant
        │                        Swift store, where xfer can read it
        ├── RegistrationFailed   registration_failed: Glance did not make the copy active
        │   │                    (registration_stalled: its import task stopped moving)
        │   └── ImportFailed     Glance's import task failed and reverted the image to queued
        ├── FrontRefused         the Glance-compatible read endpoint will not serve an image
        │                        (not active, nothing to verify against)
        └── TrustInvalid         trust_invalid: the job's trust gives no token any more
                                 (deleted, expired, or its user lost the delegated roles)

`retryable` says whether trying the same request again may succeed. tests/test_layers.py
checks that every exception class in xfer appears in this tree. No error here knows HTTP:
xfer/web/errors.py holds the one table from error class to the status and code a reply
carries (tests/test_errors.py fails on a class it does not map).

ErrorCode lists every code a failed job or an error reply can carry, by name: a client's
list is this one (the OpenAPI document's enum, docs/api.md's table).
"""

from __future__ import annotations

from enum import StrEnum

# Statuses worth a retry: the server was busy, restarting, or timed out on its side.
RETRYABLE_STATUSES = frozenset({408, 429, 498, 499, 500, 502, 503, 504})


class ErrorCode(StrEnum):
    """Every `error.code` of a job (CopyFailed) or of an error reply. docs/api.md says what
    each means and what to do; tests/test_api_reference.py keeps the two lists equal."""

    # a copy's source (S) or target (T): one code per side, named as the side
    SOURCE_NOT_FOUND = "source_not_found"
    SOURCE_FORBIDDEN = "source_forbidden"
    SOURCE_AUTH_FAILED = "source_auth_failed"
    SOURCE_DATA_CORRUPT = "source_data_corrupt"
    SOURCE_UNAVAILABLE = "source_unavailable"
    SOURCE_UNREACHABLE = "source_unreachable"
    SOURCE_ERROR = "source_error"
    SOURCE_CHANGED = "source_changed"
    SOURCE_NOT_AS_RECORDED = "source_not_as_recorded"
    TARGET_FORBIDDEN = "target_forbidden"
    TARGET_AUTH_FAILED = "target_auth_failed"
    TARGET_DATA_CORRUPT = "target_data_corrupt"
    TARGET_UNAVAILABLE = "target_unavailable"
    TARGET_UNREACHABLE = "target_unreachable"
    TARGET_ERROR = "target_error"
    TARGET_QUOTA_EXCEEDED = "target_quota_exceeded"
    TARGET_EXISTS = "target_exists"
    TARGET_VERIFICATION_FAILED = "target_verification_failed"
    TOO_LARGE_FOR_TARGET = "too_large_for_target"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    READER_STALLED = "reader_stalled"
    LOCAL_DISK_ERROR = "local_disk_error"
    CANCELLED = "cancelled"  # written by sql/queries.sql
    INTERNAL_ERROR = "internal_error"
    # image copies
    SOURCE_IMAGE_NOT_FOUND = "source_image_not_found"
    SOURCE_IMAGE_NOT_ACTIVE = "source_image_not_active"
    TARGET_IMAGE_REJECTED = "target_image_rejected"
    TARGET_IMAGE_GONE = "target_image_gone"
    UNSUPPORTED_STORE = "unsupported_store"
    REGISTRATION_FAILED = "registration_failed"
    REGISTRATION_STALLED = "registration_stalled"
    REGISTRATION_TIMEOUT = "registration_timeout"
    TRUST_INVALID = "trust_invalid"
    IMAGE_COPIES_DISABLED = "image_copies_disabled"
    REGION_NOT_AVAILABLE = "region_not_available"
    REQUEST_INTERRUPTED = "request_interrupted"
    GLANCE_FAILED = "glance_failed"
    SWIFT_FAILED = "swift_failed"
    KEYSTONE_FAILED = "keystone_failed"
    # the Glance-compatible read endpoint
    IMAGE_NOT_ACTIVE = "image_not_active"
    IMAGE_UNVERIFIABLE = "image_unverifiable"
    RANGE_NOT_SATISFIABLE = "range_not_satisfiable"
    # error replies of the API
    INVALID_REQUEST = "invalid_request"
    BAD_REQUEST = "bad_request"
    BAD_HTTP_REQUEST = "bad_http_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    BODY_TIMEOUT = "body_timeout"
    BODY_TOO_LARGE = "body_too_large"
    HTTP_ERROR = "http_error"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    NOT_CANCELLABLE = "not_cancellable"
    TRUST_REFUSED = "trust_refused"
    SERVICE_MISCONFIGURED = "service_misconfigured"
    KEYSTONE_UNAVAILABLE = "keystone_unavailable"
    DATABASE_UNAVAILABLE = "database_unavailable"
    NOT_READY = "not_ready"
    # written only by earlier versions (issue 9's branch): jobs recorded then may hold them
    TARGET_REFUSED_PROPERTIES = "target_refused_properties"  # now target_image_rejected
    UNKNOWN_REGION = "unknown_region"  # now region_not_available


class XferError(Exception):
    """Root of xfer's own exceptions."""

    retryable = False


class ConfigError(XferError):
    """A setting is missing or invalid."""


class RequestError(XferError):
    """A job request is invalid; `field` names the offending field (dotted path)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class RangeNotSatisfiable(RequestError):
    """The range lies beyond the body of `size` bytes (answered with `Content-Range: bytes
    */size`)."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__("Range", message)
        self.size = size


class RemoteError(XferError):
    """A service answered with an unexpected status."""

    def __init__(
        self,
        service: str,
        method: str,
        path: str,
        status: int,
        txn_id: str | None,
        detail: str = "",
    ) -> None:
        self.service = service
        self.method = method
        self.path = path
        self.status = status
        self.txn_id = txn_id
        self.detail = detail
        self.retryable = status in RETRYABLE_STATUSES
        text = f"{service}: {method} {path} -> {status}"
        if detail:
            text += f" ({detail})"
        text += f" [txn {txn_id or 'none'}]"
        super().__init__(text)


class AuthError(RemoteError):
    """The credentials were refused."""


class TransportError(XferError):
    """The connection failed or timed out before a complete answer."""

    retryable = True

    def __init__(self, service: str, method: str, path: str, reason: str) -> None:
        self.service = service
        self.method = method
        self.path = path
        self.reason = reason
        super().__init__(f"{service}: {method} {path} failed: {reason}")


class UntrustedCertificate(TransportError):
    """The server's certificate did not verify against the CAs xfer trusts, or is for another
    name: the same on every attempt, and the operator's (or the service's) to fix."""

    retryable = False


class IntegrityError(XferError):
    """Received bytes do not match what was requested or promised.

    A ranged body of the wrong length or range is retryable (the next read may be whole);
    a verified checksum mismatch over the whole object is not.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class BodyRejected(IntegrityError):
    """Swift computed another MD5 than the ETag sent: sending the same bytes again cannot
    help; the bytes must be read again from where they came from."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class SourceChanged(XferError):
    """The source object was replaced while it was being read: its bytes would be a mix."""


class SegmentMismatch(SourceChanged):
    """A segment of a static large object no longer matches the ETag its manifest records:
    the object cannot be read as its manifest describes until it is written again."""


class DatabaseUnavailable(XferError):
    """PostgreSQL did not answer: connection refused, reset or timed out."""

    retryable = True


class NotCancellable(XferError):
    """The job has already ended (`state`): there is nothing to cancel."""

    def __init__(self, state: str) -> None:
        super().__init__(f"the job is {state}; there is nothing to cancel")
        self.state = state


class CopyFailed(XferError):
    """A copy failed; `code` is the job's machine-readable error code."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TokenInvalid(XferError):
    """The caller's token is missing, malformed, expired or revoked: Keystone does not vouch
    for it. Never holds the token."""


class ImageNotFound(CopyFailed):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.SOURCE_IMAGE_NOT_FOUND, message)


class ImageNotActive(CopyFailed):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.SOURCE_IMAGE_NOT_ACTIVE, message)


class TargetForbidden(CopyFailed):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.TARGET_FORBIDDEN, message)


class QuotaExceeded(CopyFailed):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.TARGET_QUOTA_EXCEEDED, message)


class ImageRejected(CopyFailed):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.TARGET_IMAGE_REJECTED, message)


class UnsupportedStore(CopyFailed):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.UNSUPPORTED_STORE, message)


class RegistrationFailed(CopyFailed):
    def __init__(self, message: str,
                 code: ErrorCode = ErrorCode.REGISTRATION_FAILED) -> None:
        super().__init__(code, message)


class ImportFailed(RegistrationFailed):
    """Glance's location import task failed and the image is queued again, its data deleted by
    Glance's revert: copying the data again and registering it anew may succeed."""


class TrustRefused(AuthError):
    """`detail` is Keystone's reason and what would work, a sentence for the user."""


class ServiceCredentialsRefused(AuthError):
    """Keystone refused xfer's own service user (password, role or project): only the
    operator can fix it, and a caller retrying cannot."""


class TrustExists(RemoteError):
    """Keystone already holds (or held) a trust with this trustor, trustee, project,
    impersonation and expiry; it keeps at most one."""


class FrontRefused(CopyFailed):
    """The image cannot be served by the Glance-compatible read endpoint: `code` says why."""


class TrustInvalid(CopyFailed):
    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.TRUST_INVALID, message)
