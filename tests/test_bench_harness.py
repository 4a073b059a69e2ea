"""Pure parts of the benchmark harness: its reading of xfer's job events
(benchmarks/copiers.py), the capped link's sweep names and the shaping proxy's shared link.
Unit tests: no cloud, nothing timed."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.capped import sweep_choice
from benchmarks.copiers import job_finished_epoch, sse_events, xfer_options
from benchmarks.shaping_proxy import BURST_BYTES, _SharedLink


def test_events_are_read_with_their_names_and_data_and_comments_skipped() -> None:
    stream = [b"event: progress\n", b'data: {"state": "running"}\n', b"\n",
              b": keep-alive\n", b"\n",
              b"event: progress\r\n", b'data: {"state": "succeeded",\n', b'data: "x": 1}\n',
              b"\n", b"event: end\n", b'data: {"reason": "finished"}\n', b"\n"]
    assert list(sse_events(stream)) == [
        ("progress", {"state": "running"}), ("progress", {"state": "succeeded", "x": 1}),
        ("end", {"reason": "finished"})]


def test_a_jobs_end_is_read_from_its_finished_at() -> None:
    assert job_finished_epoch({"finished_at": "2026-12-07T21:00:00.500000+00:00"}) == \
        1796677200.5
    assert job_finished_epoch({"finished_at": None}) is None


def test_the_sweep_names_xfer_runs_with_their_chunk_size_and_segments_in_flight() -> None:
    assert sweep_choice("4:2,16:4") == ["xfer-md5-sha512-c4M-s2", "xfer-md5-sha512-c16M-s4"]
    options = xfer_options("xfer-md5-sha512-c16M-s4", "asyncio")
    assert options.sha512 is True
    assert dict(options.environ) == {"XFER_CHUNK_SIZE": str(16 << 20),
                                     "XFER_SEGMENTS_IN_FLIGHT": "4"}
    with pytest.raises(argparse.ArgumentTypeError):
        sweep_choice("4x2")


def test_the_shared_link_sends_what_all_connections_give_it_at_its_rate() -> None:
    link = _SharedLink(100e6)
    # an idle link sends a bucket's worth at once, then one byte per 1/rate seconds
    assert link.take(10.0, BURST_BYTES) == pytest.approx(10.0)
    assert link.take(10.0, 1_000_000) == pytest.approx(10.01)
    assert link.take(10.0, 1_000_000) == pytest.approx(10.02)  # another connection, queued
    assert link.take(20.0, 1_000_000) == pytest.approx(20.0 - BURST_BYTES / 100e6 + 0.01)
