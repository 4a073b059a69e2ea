"""Pure: put chunks that arrive out of order (with duplicates and partial retries) back in order.

The assembler holds only bytes that have not been delivered yet, never two copies of the same
byte, and refuses a chunk reaching more than `reach_bytes` past what it has delivered: that
is the bound that keeps fetchers from running too far ahead of the in-order consumer.
"""

from __future__ import annotations

import bisect

from xfer.errors import XferError


class BeyondReach(XferError):
    """A chunk ends beyond position + reach_bytes; the caller should have waited."""


class OrderedAssembler:
    def __init__(self, reach_bytes: int) -> None:
        if reach_bytes <= 0:
            raise ValueError("reach_bytes must be positive")
        self.reach_bytes = reach_bytes
        self.position = 0  # every byte before this has been delivered
        self._starts: list[int] = []  # sorted, non-overlapping pending intervals
        self._chunks: dict[int, bytes | memoryview] = {}

    @property
    def buffered(self) -> int:
        return sum(len(chunk) for chunk in self._chunks.values())

    def offer(self, offset: int, data: bytes | memoryview) -> list[memoryview]:
        """Accept data for [offset, offset + len(data)); return what is now deliverable, in order."""
        view = memoryview(data).cast("B")
        end = offset + len(view)
        if end > self.position + self.reach_bytes:
            raise BeyondReach(
                f"chunk [{offset}, {end}) is beyond the reach "
                f"[{self.position}, {self.position + self.reach_bytes})")
        if offset < self.position:  # already delivered in part: keep only the new bytes
            view = view[self.position - offset:]
            offset = self.position
        for piece_offset, piece in self._uncovered_pieces(offset, view):
            bisect.insort(self._starts, piece_offset)
            self._chunks[piece_offset] = piece
        return self._drain()

    def _uncovered_pieces(self, offset: int, view: memoryview) -> list[tuple[int, memoryview]]:
        """Cut the parts of [offset, offset+len) that no pending chunk already holds."""
        pieces = []
        cursor, end = offset, offset + len(view)
        index = max(0, bisect.bisect_right(self._starts, offset) - 1)
        while cursor < end:
            if index < len(self._starts):
                start = self._starts[index]
                stop = start + len(self._chunks[start])
            else:
                start = stop = end
            if stop <= cursor:
                index += 1
                continue
            if start > cursor:
                piece_end = min(start, end)
                pieces.append((cursor, view[cursor - offset:piece_end - offset]))
            cursor = max(cursor, stop)
            index += 1
        return [(o, p) for o, p in pieces if len(p)]

    def _drain(self) -> list[memoryview]:
        ready = []
        while self._starts and self._starts[0] == self.position:
            start = self._starts.pop(0)
            chunk = memoryview(self._chunks.pop(start))
            ready.append(chunk)
            self.position += len(chunk)
        return ready
