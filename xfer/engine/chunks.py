"""Chunks: the unit of buffered bytes. A chunk is fetched once and read by several consumers
(each target's PUT, the whole-object hasher, a segment's own MD5); its buffer is reused only
once the last of them is done with it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field

from xfer.engine.spill import SpillFile


def chunk_ranges(offset: int, length: int, chunk_size: int) -> list[tuple[int, int]]:
    """Pure: [offset, offset + length) cut into (start, length) pieces of `chunk_size`."""
    if length < 0 or chunk_size <= 0:
        raise ValueError("length must not be negative and chunk_size must be positive")
    return [(start, min(chunk_size, offset + length - start))
            for start in range(offset, offset + length, chunk_size)]


@dataclass(eq=False)
class Chunk:
    offset: int  # in the whole object
    view: memoryview  # released to its pool once spilled: then read it with contents()
    holders: int  # consumers that have not called done() yet
    on_free: Callable[[], None] = field(repr=False)
    on_done: Callable[[], None] = field(default=lambda: None, repr=False)  # any consumer
    length: int = field(init=False)
    _spill: SpillFile | None = field(default=None, init=False, repr=False)
    _slot: int | None = field(default=None, init=False, repr=False)
    _spilling: asyncio.Future[None] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.length = len(self.view)

    @property
    def end(self) -> int:
        return self.offset + self.length

    @property
    def in_memory(self) -> bool:
        return self._spilling is None

    def done(self) -> None:
        self.holders -= 1
        if self.holders == 0:
            self.on_free()
        self.on_done()

    async def spill(self, spill: SpillFile) -> None:
        """Move the bytes to the spill file and free the buffer: only its last consumer
        (the hasher) still needs them, and it reads them back with contents()."""
        assert self.holders == 1 and self._spilling is None
        self._spilling = asyncio.get_running_loop().create_future()
        try:
            self._slot = await spill.write(self.view)
            self._spill = spill
        finally:
            self._spilling.set_result(None)
        free, self.on_free = self.on_free, _nothing
        free()

    async def contents(self, scratch: memoryview) -> memoryview:
        """The chunk's bytes: its own buffer, or read back from the spill file into
        `scratch` (at least `length` bytes)."""
        if self._spilling is None:
            return self.view
        await self._spilling
        if self._spill is None:  # the spill failed: the buffer was never freed
            return self.view
        assert self._slot is not None
        view = scratch[:self.length]
        await self._spill.read_into(self._slot, view)
        return view


def _nothing() -> None:
    pass


class BufferPool:
    """Buffers of `size` bytes, reused instead of fresh zeroed pages (measured in engine v1:
    page faults and clear_page were a visible share of xfer's CPU). Never holds more buffers
    than were in use at once.

    One pool serves all of a process's copies (Copier.buffers): what a copy gives back, the
    next one takes. Each copy with a pool of its own kept its own peak after its segments had
    gone on to others, so a process held the sum of every copy's peak instead of what the
    budget of max_inflight_bytes lets them use at once (measured, issue 21: peak RSS grew
    about 100 MiB per copy running at once)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._free: list[bytearray] = []
        self.allocated = 0  # buffers ever made: the most in use at once, by all its users

    def take(self) -> bytearray:
        if self._free:
            return self._free.pop()
        self.allocated += 1
        return bytearray(self.size)

    def give_back(self, buffer: bytearray) -> None:
        self._free.append(buffer)


class ChunkQueue:
    """One consumer's chunks, in order; None ends an attempt. Once its consumer is gone
    (closed), what is queued and what still comes is released at once, so the producer and
    the other consumers go on."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Chunk | None] = asyncio.Queue()
        self.closed = False

    def put(self, chunk: Chunk | None) -> None:
        if not self.closed:
            self._queue.put_nowait(chunk)
        elif chunk is not None:
            chunk.done()

    async def get(self) -> Chunk | None:
        return await self._queue.get()

    def close(self) -> None:
        self.closed = True
        while not self._queue.empty():
            chunk = self._queue.get_nowait()
            if chunk is not None:
                chunk.done()


async def views_of(queue: ChunkQueue) -> AsyncGenerator[memoryview, None]:
    """The chunks of a queue as views for a streamed body; each chunk is released once the
    body asks for the next one, that is once the transport has taken its bytes."""
    while (chunk := await queue.get()) is not None:
        try:
            yield chunk.view
        finally:
            chunk.done()
