"""The Glance-compatible read endpoint's metrics (images/front.py, served by
web/glance_front.py): its image data streams, by outcome, bytes, ranged reads and time. On the
service's one registry (jobs/metrics.py makes it), never prometheus_client's global one."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

# A stream takes from well under a second (small images) to an hour (large ones, slow links):
# the buckets of a copy's duration (jobs/metrics.py), so the two compare.
STREAM_SECONDS_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0,
                          3600.0, float("inf"))
PARALLEL_READS_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, float("inf"))


class ImageStreamMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.streams = Counter("xfer_image_streams",
                               "Image data streams, by outcome: verified (the whole image), "
                               "range, or the error code that cut it",
                               ["outcome"], registry=registry)
        self.stream_bytes = Counter("xfer_image_stream_bytes", "Bytes sent by image streams",
                                    registry=registry)
        self.stream_reads = Counter("xfer_image_stream_ranged_reads",
                                    "Ranged reads of the source made by image streams",
                                    registry=registry)
        self.stream_seconds = Histogram(
            "xfer_image_stream_duration_seconds", "Time from the first ranged read to the "
            "last byte sent, per image stream that ended well",
            buckets=STREAM_SECONDS_BUCKETS, registry=registry)
        self.stream_parallel = Histogram(
            "xfer_image_stream_parallel_reads",
            "The most ranged reads in flight at once, per image stream",
            buckets=PARALLEL_READS_BUCKETS, registry=registry)

    def image_streamed(self, outcome: str, bytes_sent: int, reads: int, most_reading: int,
                       seconds: float | None = None) -> None:
        self.streams.labels(outcome=outcome).inc()
        if seconds is not None:
            self.stream_seconds.observe(seconds)
        self.stream_bytes.inc(bytes_sent)
        self.stream_reads.inc(reads)
        if reads:
            self.stream_parallel.observe(most_reading)
