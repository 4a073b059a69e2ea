"""What a region's Swift proxy served, from its access log: the bytes a copy read from the
source region, and when.

Swift's proxy-logging writes one line per client request when it ends (fields quoted, so
split on spaces), with the bytes sent and the request's start and end times (epoch seconds).
Counting there costs the copy nothing, unlike a counting proxy in its path. Only requests
from clients count (the SLO middleware's own subrequests to the segments are logged with
client "-"), and only object GETs without a query string: a manifest read
(`?multipart-manifest=get`) is not the object's bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

# Positions after the "proxy-server:" prefix in Swift's default log_msg_template.
CLIENT_IP, METHOD, PATH, STATUS, BYTES_SENT, START_TIME, END_TIME = 0, 3, 4, 6, 11, 18, 19
MIN_FIELDS = 20


@dataclass(frozen=True)
class ObjectRead:
    path: str
    bytes_sent: int
    start: float  # epoch seconds
    end: float


def _object_read(line: str) -> ObjectRead | None:
    prefix, _, rest = line.partition(" ")
    fields = rest.split()
    if prefix != "proxy-server:" or len(fields) < MIN_FIELDS or fields[CLIENT_IP] == "-":
        return None
    if fields[METHOD] != "GET" or not fields[STATUS].startswith("2"):
        return None
    path = unquote(fields[PATH])
    # /v1/<account>/<container>/<object>, and no query: the object's own bytes
    if "?" in path or len(path.split("/", 4)) < 5:
        return None
    try:
        sent = 0 if fields[BYTES_SENT] == "-" else int(fields[BYTES_SENT])
        return ObjectRead(path, sent, float(fields[START_TIME]), float(fields[END_TIME]))
    except ValueError:
        return None


class ReadCounter:
    """The object reads a proxy logged between `start` and `stop` (by file offset)."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._offset = 0

    def start(self) -> None:
        self._offset = self.log_path.stat().st_size

    def stop(self) -> list[ObjectRead]:
        with self.log_path.open("rb") as log:
            log.seek(self._offset)
            text = log.read().decode(errors="replace")
        complete = text[: text.rfind("\n") + 1]  # a line being written now is not ours
        return [read for line in complete.splitlines() if (read := _object_read(line))]


def bytes_read(reads: list[ObjectRead]) -> int:
    return sum(read.bytes_sent for read in reads)


def rate_over_reads(reads: list[ObjectRead]) -> float | None:
    """Bytes per second from the first read's start to the last one's end."""
    if not reads:
        return None
    span = max(r.end for r in reads) - min(r.start for r in reads)
    return bytes_read(reads) / span if span > 0 else None


def windowed_rates(reads: list[ObjectRead], window: float) -> list[float]:
    """Bytes per second in each whole `window` seconds from the first read's start, each
    read's bytes spread evenly over its duration."""
    if not reads:
        return []
    first, last = min(r.start for r in reads), max(r.end for r in reads)
    count = int((last - first) // window)
    totals = [0.0] * count
    for read in reads:
        duration = max(read.end - read.start, 1e-9)
        for index in range(count):
            low, high = first + index * window, first + (index + 1) * window
            overlap = min(high, read.end) - max(low, read.start)
            if overlap > 0:
                totals[index] += read.bytes_sent * overlap / duration
    return [total / window for total in totals]
