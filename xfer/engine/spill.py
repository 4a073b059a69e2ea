"""Where chunks wait for the hasher when they are ahead of it and the fetchers want their
buffers back.

The whole-object hash runs in byte order, segment after segment, while several segments
stream to the target at once: the bytes of a later segment are sent long before the hasher
reaches them. Holding them in memory would make the memory bound grow with the segment size
(7 segments of 1 GiB in flight: 6 GiB); stalling those segments until the hasher comes would
leave one PUT stream busy at a time (on a link of 50 MB/s per connection, 50 MB/s). So a chunk
that only the hasher still needs, in a segment whose fetchers are waiting for a buffer, is
written here and its buffer reused; the hasher reads it back when it gets there.

A temporary file, unlinked at once (nothing outlives the process), in slots of one chunk that
are reused once read back: its size stays below what is in flight ahead of the hasher.

Spilling buys parallel PUT streams with CPU: a byte written to the file and read back costs
about 2 CPU-s per GiB spilled (measured, issue 21: a 1 GiB SLO of 100 MiB segments spilled
79% of its bytes, 7.54-7.58 CPU-s/GiB, against 5.96 with no spill). That pays where each
connection is slow and the CPU has room (a long link), and is pure loss where the CPU is what
limits the copy. So a chunk is spilled only while the machine has idle CPU (CpuRoom), or
when its segment's PUT has waited STALL_SECONDS for it (a PUT must not sit idle until the
server gives up on it); otherwise the segment waits for the hasher.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from collections.abc import Callable
from typing import IO

from xfer.errors import CopyFailed, ErrorCode

STALL_SECONDS = 5.0  # a blocked segment spills a chunk after this, whatever the CPU


class SpillFile:
    def __init__(self, directory: str | None, slot_size: int) -> None:
        self.directory = directory
        self.slot_size = slot_size
        self._file: IO[bytes] | None = None
        self._free_slots: list[int] = []
        self._slots = 0
        self.bytes_spilled = 0  # over the copy: how much went through the file

    def _fd(self) -> int:
        if self._file is None:
            try:
                self._file = tempfile.TemporaryFile(dir=self.directory, prefix="xfer-spill-")
            except OSError as exc:
                raise _failure(self.directory, exc) from exc
        return self._file.fileno()

    async def write(self, view: memoryview) -> int:
        """Store `view` (at most one slot); returns its slot."""
        fd = self._fd()
        slot = self._free_slots.pop() if self._free_slots else self._next_slot()
        try:
            written = await asyncio.to_thread(os.pwrite, fd, view, slot * self.slot_size)
        except OSError as exc:
            self._free_slots.append(slot)
            raise _failure(self.directory, exc) from exc
        if written != len(view):
            raise _failure(self.directory, OSError(f"wrote {written} of {len(view)} bytes"))
        self.bytes_spilled += written
        return slot

    def _next_slot(self) -> int:
        self._slots += 1
        return self._slots - 1

    async def read_into(self, slot: int, view: memoryview) -> None:
        """Read a slot back into `view` (as many bytes as were stored) and free the slot."""
        try:
            read = await asyncio.to_thread(os.preadv, self._fd(), [view], slot * self.slot_size)
        except OSError as exc:
            raise _failure(self.directory, exc) from exc
        if read != len(view):
            raise _failure(self.directory, OSError(f"read {read} of {len(view)} bytes"))
        self._free_slots.append(slot)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _failure(directory: str | None, exc: OSError) -> CopyFailed:
    where = directory or tempfile.gettempdir()
    return CopyFailed(ErrorCode.LOCAL_DISK_ERROR,
                      f"xfer could not use its spill directory {where} (XFER_SPILL_DIR): {exc}")


class CpuRoom:
    """Whether the machine has idle CPU: at least `min_idle` of its cores idle over the last
    `period` seconds (/proc/stat, read at most once a period). True where it cannot tell."""

    def __init__(self, min_idle: float = 0.25, period: float = 0.5,
                 read_stat: Callable[[], tuple[int, int]] | None = None) -> None:
        self.min_idle = min_idle
        self.period = period
        self._read_stat = read_stat or _proc_stat
        self._sampled_at = -period
        self._last: tuple[int, int] | None = None
        self._room = True

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self._sampled_at >= self.period:
            self._sampled_at = now
            self._sample()
        return self._room

    def _sample(self) -> None:
        try:
            idle, total = self._read_stat()
        except (OSError, ValueError):
            self._room = True
            return
        if self._last is not None and total > self._last[1]:
            self._room = (idle - self._last[0]) / (total - self._last[1]) >= self.min_idle
        self._last = (idle, total)


def _proc_stat() -> tuple[int, int]:
    """(idle, all) clock ticks of the machine since boot, all cores."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])  # idle + iowait; user..steal
