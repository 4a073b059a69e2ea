"""What every step of one copy shares: its spec and settings, its source, its observer, its
retry policy, the process's memory budget and chunk buffers, and its share of the rate cap."""

from __future__ import annotations

from dataclasses import dataclass

from xfer.engine.chunks import BufferPool
from xfer.engine.inflight import InflightBytes
from xfer.engine.rate import TokenBucket
from xfer.engine.retry import Retrier
from xfer.engine.sources import SourceReader
from xfer.engine.types import CopyObserver, CopySpec
from xfer.settings import Settings

# Stamped on every object xfer publishes: tells a resumed attempt that the object is its own.
JOB_METADATA = "Xfer-Job"


@dataclass(frozen=True)
class CopyContext:
    spec: CopySpec
    settings: Settings
    source: SourceReader
    observer: CopyObserver
    retrying: Retrier
    memory: InflightBytes  # the process-wide bound on buffered bytes, shared by all copies
    buffers: BufferPool  # the chunk buffers within that bound, also the process's
    rate: TokenBucket  # this copy's share of the process's rate cap, and its own
