"""Prometheus metrics, one registry per service (never prometheus_client's global one).

The worker feeds the counters through `Metrics.copy_succeeded` and `Metrics.job_failed`; the
jobs-by-state gauge is read from the database at each scrape of `GET /metrics` (web/health.py),
so every process sharing the database reports the same, current numbers. The Glance-compatible
read endpoint's stream metrics are the image feature's (images/metrics.py), on this registry.
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
        self.event_streams = Gauge("xfer_event_streams", "Open GET /v1/jobs/{id}/events streams",
                                   registry=self.registry)

    # --- called by the worker -------------------------------------------------------------

    def copy_succeeded(self, size: int, seconds: float, retries: int) -> None:
        self.bytes_copied.inc(size)
        self.copy_seconds.observe(seconds)
        self.retries.inc(retries)

    def job_failed(self, code: str) -> None:
        self.errors.labels(code=code).inc()

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
