"""Prometheus metrics, one registry per service (never prometheus_client's global one).

The worker feeds the counters through `Metrics.copy_succeeded` and `Metrics.job_failed`; the
jobs-by-state gauge is read from the database at each scrape of `GET /metrics` (xfer/health.py),
so every process sharing the database reports the same, current numbers.
"""

from __future__ import annotations

import logging

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

from xfer.errors import DatabaseUnavailable
from xfer.jobs.states import JobState
from xfer.jobs.store import JobStore

log = logging.getLogger(__name__)
# A copy takes from well under a second (small images) to an hour (large ones, slow links).
COPY_SECONDS_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
                        3600.0, float("inf"))

PARALLEL_READS_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, float("inf"))


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Gauge("xfer_jobs", "Jobs in the database, by state", ["state"],
                          registry=self.registry)
        self.bytes_copied = Counter("xfer_copied_bytes", "Bytes of objects copied and verified",
                                    registry=self.registry)
        self.copy_seconds = Histogram("xfer_copy_duration_seconds",
                                      "Time from claim to verified copy, per successful copy",
                                      buckets=COPY_SECONDS_BUCKETS, registry=self.registry)
        self.retries = Counter("xfer_retries",
                               "Requests retried during successful copies",
                               registry=self.registry)
        self.errors = Counter("xfer_job_errors", "Jobs that failed, by error code", ["code"],
                              registry=self.registry)
        # the Glance-compatible read endpoint (web/glance_front.py)
        self.image_streams = Counter("xfer_image_streams",
                                     "Image data streams, by outcome: verified (the whole "
                                     "image), range, or the error code that cut it",
                                     ["outcome"], registry=self.registry)
        self.image_stream_bytes = Counter("xfer_image_stream_bytes", "Bytes sent by image "
                                          "streams", registry=self.registry)
        self.image_stream_reads = Counter("xfer_image_stream_ranged_reads",
                                          "Ranged reads of the source made by image streams",
                                          registry=self.registry)
        self.image_stream_seconds = Histogram(
            "xfer_image_stream_duration_seconds", "Time from the first ranged read to the "
            "last byte sent, per image stream that ended well",
            buckets=COPY_SECONDS_BUCKETS, registry=self.registry)
        self.image_stream_parallel = Histogram(
            "xfer_image_stream_parallel_reads",
            "The most ranged reads in flight at once, per image stream",
            buckets=PARALLEL_READS_BUCKETS, registry=self.registry)
        self.event_streams = Gauge("xfer_event_streams", "Open GET /v1/jobs/{id}/events streams",
                                   registry=self.registry)

    # --- called by the worker -------------------------------------------------------------

    def copy_succeeded(self, size: int, seconds: float, retries: int) -> None:
        self.bytes_copied.inc(size)
        self.copy_seconds.observe(seconds)
        self.retries.inc(retries)

    def job_failed(self, code: str) -> None:
        self.errors.labels(code=code).inc()

    # --- called by the image read endpoint -------------------------------------------------

    def image_streamed(self, outcome: str, bytes_sent: int, reads: int, most_reading: int,
                       seconds: float | None = None) -> None:
        self.image_streams.labels(outcome=outcome).inc()
        if seconds is not None:
            self.image_stream_seconds.observe(seconds)
        self.image_stream_bytes.inc(bytes_sent)
        self.image_stream_reads.inc(reads)
        if reads:
            self.image_stream_parallel.observe(most_reading)

    # --- read at scrape time --------------------------------------------------------------

    async def refresh_jobs(self, store: JobStore) -> None:
        """Set the jobs gauge from the database; without a database it is left out rather
        than reporting stale counts."""
        try:
            counts = await store.count_jobs_by_state()
        except DatabaseUnavailable as exc:
            log.warning("jobs gauge left out of this scrape: database unavailable: %s", exc)
            self.jobs.clear()
            return
        for state in JobState:
            self.jobs.labels(state=state.value).set(counts.get(state.value, 0))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
