"""The capped link (`--scenarios capped`): a link with an aggregate capacity as well as a
per-connection limit, and the sweep of xfer's chunk size and segments in flight run on it."""

from __future__ import annotations

import argparse

from benchmarks.copiers import sweep_copier
from benchmarks.shaping_proxy import Shape

# The capped link's sweep (`--capped-sweep`): chunk MiB : segments in flight, each an xfer run.
DEFAULT_SWEEP = "4:2,4:4,4:8,16:2,16:4"


def sweep_choice(text: str) -> list[str]:
    """`4:2,16:4` -> the sweep's xfer copiers (chunk MiB, segments in flight)."""
    try:
        pairs = [item.split(":") for item in text.split(",") if item.strip()]
        return [sweep_copier(int(chunk), int(inflight)) for chunk, inflight in pairs]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: CHUNK_MIB:SEGMENTS_IN_FLIGHT,...") from None


def stage_copiers(args: argparse.Namespace, scenario: str) -> list[str]:
    """The capped link runs the sweep's xfer runs and the other (not xfer) copiers asked for;
    the other scenarios the copiers asked for."""
    if scenario != "capped":
        return list(args.copiers)
    swept: list[str] = args.capped_sweep
    return swept + [c for c in args.copiers if not c.startswith("xfer")]


def stage_shape(args: argparse.Namespace, scenario: str) -> Shape:
    if scenario == "capped":
        return Shape(args.rtt_ms / 1000, args.capped_rate_mb * 1e6, args.capped_total_mb * 1e6)
    return Shape(args.rtt_ms / 1000, args.rate_mb * 1e6)
