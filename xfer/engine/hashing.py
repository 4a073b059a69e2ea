"""Whole-object digests computed in byte order, off the event loop.

hashlib releases the GIL on buffers over 2 KiB, so a worker thread hashing a segment lets the
event loop keep the sockets busy on the other core.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import deque
from dataclasses import dataclass

from xfer.engine.reorder import OrderedAssembler


@dataclass(frozen=True)
class Digests:
    md5: str
    sha512: str | None


def md5_hex(data: bytes | bytearray | memoryview) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


async def md5_hex_off_loop(data: bytes | bytearray | memoryview) -> str:
    if len(data) < 1 << 16:
        return md5_hex(data)
    return await asyncio.to_thread(md5_hex, data)


class InOrderHasher:
    """Feeds bytes that arrive in any order to MD5 (and SHA-512) in order.

    Producers `offer` their bytes and may then `wait_hashed` until the hasher is past them,
    after which their buffer can be reused. `run` is the hashing task; it ends at `size`.
    """

    def __init__(self, size: int, reach_bytes: int, with_sha512: bool) -> None:
        self.size = size
        self.hashed = 0
        self._assembler = OrderedAssembler(max(1, reach_bytes))
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._sha512 = hashlib.sha512() if with_sha512 else None
        # Views of bytes the assembler released in order: never more than its reach.
        self._ready: deque[memoryview] = deque()
        self._arrived = asyncio.Event()
        self._progress = asyncio.Condition()

    def offer(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        self._ready.extend(self._assembler.offer(offset, memoryview(data)))
        self._arrived.set()

    def _update(self, chunk: memoryview) -> None:
        self._md5.update(chunk)
        if self._sha512 is not None:
            self._sha512.update(chunk)

    async def run(self) -> Digests:
        while self.hashed < self.size:
            if not self._ready:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            chunk = self._ready.popleft()
            await asyncio.to_thread(self._update, chunk)
            size = len(chunk)
            del chunk  # a waiting loop must not keep the last segment's buffer alive
            async with self._progress:
                self.hashed += size
                self._progress.notify_all()
        return Digests(self._md5.hexdigest(),
                       self._sha512.hexdigest() if self._sha512 is not None else None)

    async def wait_hashed(self, end: int) -> None:
        async with self._progress:
            await self._progress.wait_for(lambda: self.hashed >= end)
