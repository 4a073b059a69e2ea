"""Whole-object digests computed in byte order, off the event loop, on two cores.

hashlib releases the GIL on buffers over 2 KiB, so MD5 and SHA-512 each run in a worker
thread, side by side, while the event loop keeps the sockets busy.

The hasher takes segments in order. A segment's chunks reach it as they are fetched, in
order; at the segment's end it waits for the verdict of the attempt that fetched them (its
PUT accepted: the bytes were right). An attempt that failed may have fed it damaged bytes:
it returns to the state it had at the segment's start and takes the next attempt's chunks.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from dataclasses import dataclass
from typing import Any

from xfer.engine.chunks import Chunk


@dataclass(frozen=True)
class Digests:
    md5: str
    sha512: str | None


def md5_hex(data: bytes | bytearray | memoryview) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


# The digests of no bytes: what an empty object or segment must declare.
EMPTY_DIGESTS = Digests(md5_hex(b""), hashlib.sha512(b"").hexdigest())


@dataclass(frozen=True)
class AttemptEnd:
    """Put after an attempt's last chunk: whether its bytes were accepted."""

    accepted: bool


class SegmentFeed:
    """One segment's way to the hasher: its chunks in order, attempt by attempt."""

    def __init__(self, offset: int, length: int) -> None:
        self.offset = offset
        self.length = length
        self._items: deque[Chunk | AttemptEnd] = deque()
        self._arrived = asyncio.Event()
        self.hashed = asyncio.Event()  # the hasher is through this segment's accepted bytes

    def put(self, item: Chunk | AttemptEnd) -> None:
        self._items.append(item)
        self._arrived.set()

    async def get(self) -> Chunk | AttemptEnd:
        while not self._items:
            self._arrived.clear()
            await self._arrived.wait()
        return self._items.popleft()

    def end_attempt(self, accepted: bool) -> None:
        if not accepted:  # chunks the hasher has not taken yet are stale: drop them now
            for item in self._items:
                if isinstance(item, Chunk):
                    item.done()
            self._items.clear()
        self.put(AttemptEnd(accepted))

    def spill_candidate(self) -> Chunk | None:
        """The chunk furthest ahead that only the hasher still needs, still in memory."""
        for item in reversed(self._items):
            if isinstance(item, Chunk) and item.holders == 1 and item.in_memory:
                return item
        return None


class StreamHasher:
    """MD5, and SHA-512 unless disabled, over chunks offered in order; copyable states."""

    def __init__(self, with_sha512: bool) -> None:
        self.md5: Any = hashlib.md5(usedforsecurity=False)
        self.sha512: Any = hashlib.sha512() if with_sha512 else None

    def copy(self) -> StreamHasher:
        twin = StreamHasher(False)
        twin.md5 = self.md5.copy()
        twin.sha512 = None if self.sha512 is None else self.sha512.copy()
        return twin

    async def update(self, view: memoryview) -> None:
        if self.sha512 is None:
            await asyncio.to_thread(self.md5.update, view)
        else:
            await asyncio.gather(asyncio.to_thread(self.md5.update, view),
                                 asyncio.to_thread(self.sha512.update, view))

    def digests(self) -> Digests:
        return Digests(self.md5.hexdigest(),
                       None if self.sha512 is None else self.sha512.hexdigest())


async def hash_in_order(feeds: asyncio.Queue[SegmentFeed | None], with_sha512: bool,
                        chunk_size: int) -> Digests:
    """The hashing task of a copy: segments in the order their feeds arrive, until None."""
    hasher = StreamHasher(with_sha512)
    scratch = memoryview(bytearray(chunk_size))  # for chunks read back from the spill file
    position = 0
    while (feed := await feeds.get()) is not None:
        if feed.offset != position:
            raise AssertionError(f"segment at {feed.offset} fed while the hasher is at {position}")
        at_start = hasher.copy()
        while True:
            item = await feed.get()
            if isinstance(item, AttemptEnd):
                if not item.accepted:  # that attempt's bytes are void: start the segment over
                    hasher, position = at_start.copy(), feed.offset
                    continue
                if position != feed.offset + feed.length:
                    raise AssertionError(f"segment at {feed.offset} accepted with the hasher "
                                         f"at {position}")
                feed.hashed.set()
                break
            if item.offset != position:
                raise AssertionError(f"chunk at {item.offset} while the hasher is at {position}")
            try:
                await hasher.update(await item.contents(scratch))
            finally:
                item.done()
            position = item.end
    return hasher.digests()
