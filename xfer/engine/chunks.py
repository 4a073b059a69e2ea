"""Chunks: the unit of buffered bytes. A chunk is fetched once and read by several consumers
(each target's PUT, the whole-object hasher, a segment's own MD5); its buffer is reused only
once the last of them is done with it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field


def chunk_ranges(offset: int, length: int, chunk_size: int) -> list[tuple[int, int]]:
    """Pure: [offset, offset + length) cut into (start, length) pieces of `chunk_size`."""
    if length < 0 or chunk_size <= 0:
        raise ValueError("length must not be negative and chunk_size must be positive")
    return [(start, min(chunk_size, offset + length - start))
            for start in range(offset, offset + length, chunk_size)]


@dataclass(eq=False)
class Chunk:
    offset: int  # in the whole object
    view: memoryview
    holders: int  # consumers that have not called done() yet
    on_free: Callable[[], None] = field(repr=False)

    @property
    def end(self) -> int:
        return self.offset + len(self.view)

    def done(self) -> None:
        self.holders -= 1
        if self.holders == 0:
            self.on_free()


class BufferPool:
    """Buffers of `size` bytes for one copy's chunks, reused instead of fresh zeroed pages
    (measured in engine v1: page faults and clear_page were a visible share of xfer's CPU).
    Never holds more buffers than were in use at once."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free: list[bytearray] = []

    def take(self) -> bytearray:
        return self._free.pop() if self._free else bytearray(self.size)

    def give_back(self, buffer: bytearray) -> None:
        self._free.append(buffer)


ChunkQueue = asyncio.Queue["Chunk | None"]  # None: no more chunks in this attempt


async def views_of(queue: ChunkQueue) -> AsyncIterator[memoryview]:
    """The chunks of a queue as views for a streamed body; each chunk is released once the
    body asks for the next one, that is once the transport has taken its bytes."""
    while (chunk := await queue.get()) is not None:
        try:
            yield chunk.view
        finally:
            chunk.done()


def release_queued(queue: ChunkQueue) -> None:
    """Release every chunk still waiting in a queue whose consumer is gone."""
    while not queue.empty():
        chunk = queue.get_nowait()
        if chunk is not None:
            chunk.done()
