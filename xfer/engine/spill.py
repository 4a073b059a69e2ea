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

Spilling buys parallel PUT streams with CPU (a byte written and read back), so for a while it
was done only while the machine had idle CPU. That gate measured worse (issue 21, 2026-12-08,
quiet 2-core machine, `make bench BENCH_ARGS="--sizes 1 --repeat 1 --scenarios
colocated,emulated --sources slo100 --copiers xfer-md5-sha512 --extra-runs none"`, two runs
each): on the emulated link (40 ms, 50 MB/s per connection) an SLO of 100 MiB segments copied
at 45-53 MiB/s gated and 67-76 MiB/s spilling whenever a segment was blocked. The gate said
"no room" in bursts while the machine averaged 0.8 idle cores, and each refusal left a PUT
idle until the hasher came. Co-located (CPU-bound), spilling left the rate as it was (79-83
vs 82-85 MiB/s) for 0.6-0.8 more CPU-s per GiB. So a blocked segment spills at once.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from typing import IO

from xfer.errors import CopyFailed, ErrorCode


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
