"""A process-wide bound on the bytes all copies may hold in buffers at once."""

from __future__ import annotations

import asyncio
from collections import deque


class InflightBytes:
    """Copies take a segment's bytes before allocating its buffer and give them back when
    the segment is done, so a burst of copies queues instead of exhausting memory.

    Grants are first come, first served, so a large request is not starved by smaller ones;
    a copy takes its segments in order, so its oldest segment never waits behind its newer
    ones. A request larger than the whole budget is granted alone, once nothing is held.
    """

    def __init__(self, total: int) -> None:
        if total <= 0:
            raise ValueError("XFER_MAX_INFLIGHT_BYTES must be positive")
        self.total = total
        self.held = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def take(self, size: int) -> int:
        """Wait for `size` bytes (capped at the total); returns what to give back."""
        size = min(size, self.total)
        if not self._waiting and self.held + size <= self.total:
            self.held += size
            return size
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((size, granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.give_back(size)  # granted just as we were cancelled
            else:
                self._waiting.remove((size, granted))
                self._grant()
            raise
        return size

    def give_back(self, size: int) -> None:
        self.held -= size
        self._grant()

    def _grant(self) -> None:
        while self._waiting and self.held + self._waiting[0][0] <= self.total:
            size, granted = self._waiting.popleft()
            self.held += size
            granted.set_result(None)
