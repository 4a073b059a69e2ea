"""Pure parts of the benchmark harness: its reading of xfer's job events
(benchmarks/copiers.py), the capped link's sweep names, the shaping proxy's shared link, and
what it says of xfer's CPU beyond its hashes. Unit tests: no cloud, nothing timed."""

from __future__ import annotations

import argparse
import hashlib
import os
import threading

import pytest

from benchmarks.capped import sweep_choice
from benchmarks.copiers import job_finished_epoch, sse_events, xfer_options
from benchmarks.procstat import cpu_seconds, main_thread_cpu_seconds
from benchmarks.report import add_beyond_hashes, beyond_hashes_table
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


def test_beyond_the_hashes_counts_each_hash_pass_and_the_loop_thread_is_measured() -> None:
    floor = {"md5": {"cpu_s_per_gib": 1.8}, "sha512": {"cpu_s_per_gib": 2.1}}
    cut_anew = {"scenario": "colocated", "source": "plain 1 GiB", "copier": "xfer-md5-sha512",
                "repeat": 1, "size": 1 << 30, "sha512": True, "segments_kept": False,
                "layout": "slo", "copier_cpu_s_per_gib": 8.0, "other_cores": 0.0,
                "loop_thread_cpu_seconds": 2.5}
    kept = {**cut_anew, "source": "slo100 1 GiB", "segments_kept": True,
            "copier_cpu_s_per_gib": 6.0, "loop_thread_cpu_seconds": None}
    other = {"copier": "rclone", "copier_cpu_s_per_gib": 3.0}
    add_beyond_hashes([cut_anew, kept, other], floor)
    # segments xfer cuts need their own MD5 for their PUT: two MD5 passes and a SHA-512
    assert cut_anew["beyond_hashes_cpu_s_per_gib"] == pytest.approx(8.0 - 2 * 1.8 - 2.1)
    assert cut_anew["hashes"] == "2xMD5+SHA-512 (segments cut anew)"
    assert cut_anew["loop_cpu_s_per_gib"] == 2.5
    assert kept["beyond_hashes_cpu_s_per_gib"] == pytest.approx(6.0 - 1.8 - 2.1)
    assert "loop_cpu_s_per_gib" not in kept
    assert other["beyond_hashes_cpu_s_per_gib"] is None
    lines = beyond_hashes_table([cut_anew, kept, other]).splitlines()
    assert lines[0].split()[4:7] == ["cpu/GiB", "beyond", "loop"]
    # the source names ("plain 1 GiB") take three words: cpu/GiB, beyond and loop follow
    assert [line.split()[6:9] for line in lines[1:]] == [["8.00", "2.30", "2.50"],
                                                        ["6.00", "2.10", "-"]]


def test_the_main_threads_cpu_leaves_out_what_other_threads_spend() -> None:
    main_before, all_before = main_thread_cpu_seconds(os.getpid()), cpu_seconds(os.getpid())

    def burn() -> None:  # hashlib releases the GIL: CPU on this thread, not the main one
        hashlib.sha512(bytes(256 << 20)).digest()

    worker = threading.Thread(target=burn)
    worker.start()
    worker.join()
    spent_all = cpu_seconds(os.getpid()) - all_before
    spent_main = main_thread_cpu_seconds(os.getpid()) - main_before
    assert spent_all >= 0.2  # 256 MiB of SHA-512: about half a second on this machine
    assert spent_main < spent_all / 2


def test_a_plain_source_larger_than_swift_takes_is_refused_before_anything_runs(
        capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks.run import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--sizes", "1,16", "--sources", "plain"])
    assert "--sources slo100" in capsys.readouterr().err
    assert parse_args(["--sizes", "1,16", "--sources", "slo100"]).sizes[-1] == 16 << 30
    assert parse_args(["--sizes", "4", "--sources", "plain"]).sizes == [4 << 30]
