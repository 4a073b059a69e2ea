"""Where a copy reads from, behind one interface (`SourceReader`): a Swift object or a local
file here; the image feature implements it for an image read through its Glance
(images/data.py), the engine knowing nothing of Glance.

Every read is pinned to the version seen at the start (Swift: If-Match on its ETag; a file:
its inode, size and modification time, checked around each read), so a source that changes
during the copy ends it as source_changed instead of yielding a mix of two versions.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import stat as stat_module
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote

import aiofiles
import aiofiles.os

from xfer.clients.swift import SwiftClient
from xfer.clients.transport import RangeProgress
from xfer.engine.types import ObjectRef
from xfer.errors import CopyFailed, ErrorCode, SourceChanged
from xfer.proto import swift


@dataclass(frozen=True)
class SourceState:
    size: int
    version: str  # what pins every read: Swift's ETag, or a file's inode:size:mtime
    content_md5: str | None  # an MD5 the source itself vouches for (a plain object's ETag)
    kind: swift.ObjectKind = swift.ObjectKind.PLAIN
    dlo_prefix: str | None = None


class SourceReader(Protocol):
    def describe(self) -> str: ...

    async def state(self) -> SourceState:
        """Read the source's size and version now."""
        ...

    async def segments(self, state: SourceState) -> list[tuple[int, str]]:
        """A large object's own segments (size, MD5), to keep their boundaries; [] if none."""
        ...

    async def read_into(self, state: SourceState, start: int, view: memoryview,
                        progress: RangeProgress) -> None:
        """Fill `view` with bytes [start, start + len(view)) of that version exactly."""
        ...


@dataclass(frozen=True)
class DloPart:
    """One segment object of a DLO, where its bytes sit in the whole."""

    offset: int
    size: int
    container: str
    name: str
    etag: str


def dlo_parts(container: str, listed: list[swift.Listed]) -> list[DloPart]:
    """Pure: a DLO's segments (its listing, in name order: the order Swift joins them) with
    their offsets in the whole object."""
    parts, offset = [], 0
    for entry in listed:
        parts.append(DloPart(offset, entry.bytes, container, entry.name, entry.hash))
        offset += entry.bytes
    return parts


def part_holding(parts: list[DloPart], start: int, length: int) -> DloPart | None:
    """Pure: the segment holding all of [start, start + length), if one does."""
    index = bisect.bisect_right(parts, start, key=lambda part: part.offset) - 1
    while index >= 0 and parts[index].size == 0:  # empty segments share an offset
        index -= 1
    if index < 0:
        return None
    part = parts[index]
    return part if start + length <= part.offset + part.size else None


class SwiftSource:
    """A Swift object. A DLO's bytes are read from its segment objects themselves, each read
    pinned to its segment's ETag: a ranged GET of the manifest would cost Swift a container
    listing every time (measured on a 1 GiB Glance image: 4 MiB reads of the manifest made the
    image copy 19 s, against 14-15 s with 16 MiB ones). A segment changed since the listing
    fails its If-Match; one added or removed changes the manifest's ETag, checked after the
    copy."""

    def __init__(self, client: SwiftClient, ref: ObjectRef) -> None:
        self.client = client
        self.ref = ref
        self._parts: list[DloPart] | None = None  # a DLO's, once listed
        self._listing = asyncio.Lock()

    def describe(self) -> str:
        return self.ref.describe()

    async def state(self) -> SourceState:
        head = await self.client.head_object(self.ref.container, self.ref.object)
        plain = head.kind is swift.ObjectKind.PLAIN  # an SLO's or DLO's ETag is no content MD5
        return SourceState(head.size, head.etag, head.etag if plain else None, head.kind,
                           head.dlo_prefix)

    async def segments(self, state: SourceState) -> list[tuple[int, str]]:
        if state.kind is swift.ObjectKind.SLO:
            manifest = await self.client.get_manifest(self.ref.container, self.ref.object)
            if any(m.range or m.sub_slo or m.inline_data for m in manifest):
                return []  # ranged or nested segments: their ETags are not segment MD5s
            return [(m.size_bytes, m.etag) for m in manifest]
        if state.kind is swift.ObjectKind.DLO and state.dlo_prefix:
            return [(part.size, part.etag) for part in await self._dlo_parts(state)]
        return []

    async def _dlo_parts(self, state: SourceState) -> list[DloPart]:
        async with self._listing:
            if self._parts is None:
                assert state.dlo_prefix is not None
                container, _, prefix = unquote(state.dlo_prefix).partition("/")
                parts = dlo_parts(container, await self.client.list_objects(container, prefix))
                listed = sum(part.size for part in parts)
                if listed != state.size:
                    raise SourceChanged(f"{self.describe()}: its segments hold {listed} "
                                        f"bytes, the manifest {state.size}")
                self._parts = parts
            return self._parts

    async def read_into(self, state: SourceState, start: int, view: memoryview,
                        progress: RangeProgress) -> None:
        if state.kind is swift.ObjectKind.DLO and state.dlo_prefix:
            part = part_holding(await self._dlo_parts(state), start, len(view))
            if part is not None:
                await self.client.read_range_into(part.container, part.name,
                                                  start - part.offset, part.size, view,
                                                  if_match=part.etag, progress=progress)
                return
        await self.client.read_range_into(self.ref.container, self.ref.object, start,
                                          state.size, view, if_match=state.version,
                                          progress=progress)


class FileSource:
    """A local file, read in parallel through aiofiles (one open file per read, so that
    concurrent reads at different offsets never share a file position)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def describe(self) -> str:
        return f"local file {self.path}"

    async def state(self) -> SourceState:
        try:
            stat = await aiofiles.os.stat(self.path)
        except FileNotFoundError:
            raise CopyFailed(ErrorCode.SOURCE_NOT_FOUND, f"{self.describe()} does not exist") from None
        except PermissionError:
            raise CopyFailed(ErrorCode.SOURCE_FORBIDDEN, f"no permission to read {self.describe()}"
                             ) from None
        if not stat_module.S_ISREG(stat.st_mode):
            raise CopyFailed(ErrorCode.SOURCE_NOT_FOUND, f"{self.describe()} is not a regular file")
        return SourceState(stat.st_size, _version(stat), None)

    async def segments(self, state: SourceState) -> list[tuple[int, str]]:
        return []

    async def read_into(self, state: SourceState, start: int, view: memoryview,
                        progress: RangeProgress) -> None:
        file = await _opened(self.path)
        try:
            if _version(os.fstat(file.fileno())) != state.version:
                raise SourceChanged(f"{self.describe()} changed since the copy started")
            await file.seek(start)
            filled = 0
            while filled < len(view):
                read = await file.readinto(view[filled:])
                if not read:
                    raise SourceChanged(f"{self.describe()} ended at byte {start + filled}, "
                                        f"before its {state.size} bytes")
                filled += read
                progress.filled += read
            if _version(os.fstat(file.fileno())) != state.version:
                raise SourceChanged(f"{self.describe()} changed while it was read")
        finally:
            file.raw.close()  # not `await file.close()`: a cancelled read must close it too


async def _opened(path: str) -> Any:
    """aiofiles.open, but a read cancelled while its file opens (a sibling read failed) waits
    for the open, which runs on in its thread, and closes the file before it ends: nothing of
    a cancelled read outlives it."""
    opening = asyncio.ensure_future(aiofiles.open(path, "rb"))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        # added before the wait's own callback, so it has run by the time the wait returns;
        # and if this task is cancelled again meanwhile, it still closes the file later
        opening.add_done_callback(_close_opened)
        await asyncio.wait([opening])  # an open of a local file: brief, and never cancelled
        raise


def _close_opened(opening: asyncio.Future[Any]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().raw.close()  # sync: the thread pool may be shutting down


def _version(stat: os.stat_result) -> str:
    return f"{stat.st_ino}:{stat.st_size}:{stat.st_mtime_ns}"
