"""Turn a low-level error into the job's error code and a sentence a user can act on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from xfer.engine.retry import RetryBudgetExhausted
from xfer.errors import (
    AuthError,
    CopyFailed,
    ErrorCode,
    IntegrityError,
    RemoteError,
    SegmentMismatch,
    SourceChanged,
    TransportError,
    XferError,
)


@dataclass(frozen=True)
class SideCodes:
    """The codes of one side of a copy: a failure is the source's or the target's."""

    auth_failed: ErrorCode
    forbidden: ErrorCode
    data_corrupt: ErrorCode
    unavailable: ErrorCode
    unreachable: ErrorCode
    error: ErrorCode


CODES_OF_SIDE = {
    "source": SideCodes(ErrorCode.SOURCE_AUTH_FAILED, ErrorCode.SOURCE_FORBIDDEN,
                        ErrorCode.SOURCE_DATA_CORRUPT, ErrorCode.SOURCE_UNAVAILABLE,
                        ErrorCode.SOURCE_UNREACHABLE, ErrorCode.SOURCE_ERROR),
    "target": SideCodes(ErrorCode.TARGET_AUTH_FAILED, ErrorCode.TARGET_FORBIDDEN,
                        ErrorCode.TARGET_DATA_CORRUPT, ErrorCode.TARGET_UNAVAILABLE,
                        ErrorCode.TARGET_UNREACHABLE, ErrorCode.TARGET_ERROR),
}


def describe_failure(side: str, operation: str, where: str, exc: XferError) -> CopyFailed:
    """`side` is 'source' or 'target'; `where` says which object in which region."""
    codes = CODES_OF_SIDE[side]
    cause = exc
    if isinstance(exc, RetryBudgetExhausted) and isinstance(exc.__cause__, XferError):
        cause = exc.__cause__
    if isinstance(cause, SegmentMismatch):
        return CopyFailed(ErrorCode.SOURCE_CHANGED,
                          f"source object {where} is a large object one of whose segments no "
                          f"longer matches its manifest: a segment was replaced or damaged, "
                          f"now or earlier, so its bytes are not those it was written with. "
                          f"It reads again only once its owner uploads it again. ({cause})")
    if isinstance(cause, SourceChanged):
        return CopyFailed(ErrorCode.SOURCE_CHANGED,
                          f"source object {where} changed while it was being copied (it is no "
                          f"longer the version read at the start), so the copy would mix two "
                          f"versions; nothing was published. Copy it again once it stops "
                          f"changing. ({cause})")
    if isinstance(cause, AuthError):
        return CopyFailed(codes.auth_failed,
                          f"{side} credentials were refused while trying to {operation} "
                          f"{where}: {cause}")
    if isinstance(cause, RemoteError):
        if cause.status == 404 and side == "source":
            return CopyFailed(ErrorCode.SOURCE_NOT_FOUND, f"source object {where} not found ({cause})")
        if cause.status in (401, 403):
            return CopyFailed(codes.forbidden,
                              f"no permission to {operation} {where} ({cause})")
        if cause.status == 413 and side == "target":
            return CopyFailed(ErrorCode.TARGET_QUOTA_EXCEEDED,
                              f"the target refused to {operation} {where}: quota or size "
                              f"limit exceeded ({cause})")
    if isinstance(cause, IntegrityError):
        return CopyFailed(codes.data_corrupt,
                          f"data did not verify while trying to {operation} {where}: {cause}")
    # Retryable errors only get here once the retries are spent.
    prefix = "gave up after retries: " if cause.retryable else ""
    if isinstance(cause, RemoteError) and cause.retryable:
        return CopyFailed(codes.unavailable,
                          f"{prefix}the {side} region kept failing to {operation} {where} "
                          f"({cause})")
    if isinstance(cause, TransportError):
        return CopyFailed(codes.unreachable,
                          f"{prefix}could not {operation} {where}: {cause.reason} ({cause})")
    return CopyFailed(codes.error, f"{prefix}could not {operation} {where}: {cause}")


@contextmanager
def failing_as(side: str, operation: str, where: str) -> Iterator[None]:
    try:
        yield
    except CopyFailed:
        raise
    except XferError as exc:
        raise describe_failure(side, operation, where, exc) from exc


def first_failure(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one error to report from a TaskGroup's failures: a CopyFailed first (it carries the
    job's error code), else the first one. The only place exception groups are unwrapped."""
    flat: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            flat.append(exc)

    walk(group)
    for exc in flat:
        if isinstance(exc, CopyFailed):
            return exc
    return flat[0]
