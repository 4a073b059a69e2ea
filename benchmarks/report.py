"""The hashing floor, the tables of runs and medians, and the JSON file."""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

GiB = 1 << 30
MiB = 1 << 20
CORES = 2


def hashing_floor(total: int = 512 * MiB, chunk: int = 4 * MiB) -> dict[str, dict[str, float]]:
    """MD5 and SHA-512 on one core: MB/s and CPU seconds per GiB (thread CPU time)."""
    buffer = bytes(range(256)) * (chunk // 256)
    floor = {}
    for name in ("md5", "sha512"):
        digest = hashlib.new(name, usedforsecurity=False)
        wall, cpu = time.perf_counter(), time.thread_time()
        for _ in range(total // chunk):
            digest.update(buffer)
        wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
        # per CPU second, not per wall second: other programs may share the core meanwhile
        floor[name] = {"MB/s": round(total / cpu / 1e6, 1), "wall_MB/s": round(total / wall / 1e6, 1),
                       "cpu_s_per_gib": round(cpu / (total / GiB), 3)}
    return floor


def per_gib(seconds: float, size: int) -> float:
    return seconds / (size / GiB)


def hash_floor(row: dict[str, Any], floor: dict[str, dict[str, float]]) -> tuple[float, str]:
    """CPU-s/GiB of the hashes an xfer run needs on one core, and their names. Kept source
    segments (and a plain target) declare their MD5; segments cut anew need their own MD5
    for their PUT too."""
    md5, sha512 = floor["md5"]["cpu_s_per_gib"], floor["sha512"]["cpu_s_per_gib"]
    passes = 1 if row["segments_kept"] or row.get("layout") == "plain" else 2
    cost, names = passes * md5, ("MD5" if passes == 1 else "2xMD5 (segments cut anew)")
    if row.get("sha512"):
        cost, names = cost + sha512, names.replace("MD5", "MD5+SHA-512", 1)
    return cost, names


def add_beyond_hashes(rows: Iterable[dict[str, Any]], floor: dict[str, dict[str, float]]) -> None:
    """xfer's CPU-s per GiB beyond the one-core cost of its hashes (issue 21's goal: <= 1.5),
    on each xfer run (a row that says whether it hashed SHA-512); None for other copiers."""
    for row in rows:
        if "sha512" not in row or not floor:
            row["beyond_hashes_cpu_s_per_gib"] = None
            continue
        cost, row["hashes"] = hash_floor(row, floor)
        row["beyond_hashes_cpu_s_per_gib"] = round(row["copier_cpu_s_per_gib"] - cost, 2)
        if row.get("loop_thread_cpu_seconds") is not None:  # measured, not derived
            row["loop_cpu_s_per_gib"] = round(
                per_gib(row["loop_thread_cpu_seconds"], row["size"]), 2)


def _figure(row: dict[str, Any], key: str) -> str:
    """A CPU-s/GiB figure the row may lack (not an xfer run, or not measured): `-` then."""
    value = row.get(key)
    return "-" if value is None else f"{value:.2f}"


def _beyond(row: dict[str, Any]) -> str:
    return _figure(row, "beyond_hashes_cpu_s_per_gib")


def _loop(row: dict[str, Any]) -> str:
    return _figure(row, "loop_cpu_s_per_gib")


def derive(row: dict[str, Any]) -> dict[str, Any]:
    """Per-GiB and throughput figures of one measured run (added to the row)."""
    size, wall = row["size"], row["wall_seconds"]
    swift = sum(v for k, v in row["cpu_by_process"].items() if k.endswith("-server"))
    proxies = sum(v for k, v in row["cpu_by_process"].items() if k.startswith("shaping"))
    copier = per_gib(row["copier_cpu_seconds"], size)
    # loopback TCP, processed in softirq: in no process's CPU, yet part of what a copy costs
    network = per_gib(row["softirq_cores"] * wall, size)
    row["mib_s"] = round(size / MiB / wall, 1) if row["ok"] else 0.0
    row["copier_cpu_s_per_gib"] = round(copier, 2)
    row["swift_cpu_s_per_gib"] = round(per_gib(swift, size), 2)
    row["proxy_cpu_s_per_gib"] = round(per_gib(proxies, size), 2)
    row["softirq_cpu_s_per_gib"] = round(network, 2)
    cost = per_gib(swift + proxies, size) + copier + network
    row["cost_cpu_s_per_gib"] = round(cost, 2)
    row["ceiling_mib_s"] = round(CORES / cost * 1024, 1) if cost > 0 else None
    job = row.get("job") or {}
    row["layout"] = job.get("layout")
    # xfer kept the source's segments: as many target segments as source segments
    row["segments_kept"] = bool(row["source_segments"] >= 2 and job.get("layout") == "slo"
                                and job.get("segments_total") == row["source_segments"])
    return row


COLUMNS: tuple[tuple[str, str, Callable[[dict[str, Any]], str]], ...] = (
    ("scenario", "<10", lambda r: r["scenario"]),
    ("source", "<14", lambda r: r["source"]),
    ("copier", "<16", lambda r: r["copier"]),
    ("#", ">1", lambda r: str(r["repeat"])),
    ("MiB/s", ">6", lambda r: f"{r['mib_s']:.1f}" if r["ok"] else "FAIL"),
    ("wall s", ">6", lambda r: f"{r['wall_seconds']:.1f}"),
    ("cpu/GiB", ">7", lambda r: f"{r['copier_cpu_s_per_gib']:.2f}"),
    ("beyond", ">6", _beyond),
    ("swift/GiB", ">9", lambda r: f"{r['swift_cpu_s_per_gib']:.2f}"),
    ("proxy/GiB", ">9", lambda r: f"{r['proxy_cpu_s_per_gib']:.2f}"),
    ("busy cores", ">10", lambda r: f"{r['busy_cores']:.2f}"),
    ("softirq", ">7", lambda r: f"{r['softirq_cores']:.2f}"),
    ("others", ">6", lambda r: f"{r['other_cores']:.2f}"),
    ("RSS MiB", ">7", lambda r: f"{r['peak_rss_bytes'] / MiB:.0f}"),
    ("ceiling", ">7", lambda r: f"{r['ceiling_mib_s'] or 0:.0f}"),
    ("read", ">5", lambda r: f"{r['source_bytes_read'] / r['size']:.2f}"),
    ("md5 verified", "<17", lambda r: r["md5_verified"]),
    ("target", "<6", lambda r: r["target_kind"]),
)


def table(rows: Iterable[dict[str, Any]]) -> str:
    header = "  ".join(f"{name:{align}}" for name, align, _ in COLUMNS)
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append("  ".join(f"{cell(row):{align}}" for _, align, cell in COLUMNS))
    return "\n".join(lines)


def beyond_hashes_table(rows: Iterable[dict[str, Any]]) -> str:
    """`loop`: what xfer's main thread (its event loop: HTTP, buffers, job records) spent,
    measured; `beyond`: all of xfer's CPU less the one-core cost of its hashes, derived."""
    lines = [f"{'scenario':<10}  {'source':<14}  {'run':<22}  {'#':>1}  {'cpu/GiB':>7}  "
             f"{'beyond':>6}  {'loop':>6}  {'others':>6}  hashes"]
    for row in rows:
        if row.get("beyond_hashes_cpu_s_per_gib") is None:
            continue
        lines.append(f"{row['scenario']:<10}  {row['source']:<14}  {row['copier']:<22}  "
                     f"{row['repeat']:>1}  {row['copier_cpu_s_per_gib']:>7.2f}  {_beyond(row):>6}"
                     f"  {_loop(row):>6}"
                     f"  {row['other_cores']:>6.2f}  {row['hashes']}")
    return "\n".join(lines)


def _median(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r["ok"] and r.get(key) is not None]
    return statistics.median(values) if values else None


SUMMARY_MEDIANS = ("mib_s", "wall_seconds", "copier_cpu_s_per_gib", "beyond_hashes_cpu_s_per_gib",
                   "loop_cpu_s_per_gib",
                   "swift_cpu_s_per_gib",
                   "proxy_cpu_s_per_gib", "softirq_cpu_s_per_gib", "cost_cpu_s_per_gib",
                   "ceiling_mib_s", "busy_cores", "other_cores")


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians over repeats, per scenario, source and copier (peak RSS: the highest)."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["scenario"], row["source"], row["copier"]), []).append(row)
    summary = []
    for (scenario, source, copier), group in groups.items():
        entry: dict[str, Any] = {"scenario": scenario, "source": source, "copier": copier,
                                 "size": group[0]["size"], "runs": len(group),
                                 "ok_runs": sum(r["ok"] for r in group)}
        for key in SUMMARY_MEDIANS:
            entry[key] = _median(group, key)
        entry["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in group)
        entry["rss_before_job_bytes"] = max(r.get("rss_before_job_bytes", 0) for r in group)
        entry["segments_kept"] = all(r["segments_kept"] for r in group)
        entry["layout"] = group[0].get("layout")
        entry["sha512"] = group[0].get("sha512")
        entry["source_reads"] = max(r["source_bytes_read"] / r["size"] for r in group)
        summary.append(entry)
    return summary


def summarise_fanout(comparisons: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians of the fan-out comparisons per way (one job, xfer upload), scenario, source."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for comparison in comparisons:
        key = (comparison["via"], comparison["scenario"], comparison["source"])
        groups.setdefault(key, []).append(comparison)
    summary = []
    for (via, scenario, source), group in groups.items():
        entry: dict[str, Any] = {"via": via, "scenario": scenario, "source": source,
                                 "size": group[0]["size"], "runs": len(group),
                                 "ok_runs": sum(c["ok"] for c in group)}
        for key in ("speedup", "fanout_wall_seconds", "sequential_wall_seconds",
                    "fanout_cpu_seconds", "fanout_other_cores"):
            entry[key] = _median(group, key)
        for key in ("fanout_source_reads", "sequential_source_reads"):
            entry[key] = max((c[key] for c in group if c["ok"]), default=None)
        summary.append(entry)
    return summary


def summary_table(summary: Sequence[dict[str, Any]]) -> str:
    lines = [f"{'scenario':<10}  {'source':<14}  {'copier':<16}  {'MiB/s':>6}  {'cpu/GiB':>7}  "
             f"{'beyond':>6}  {'loop':>5}  {'swift/GiB':>9}  {'proxy/GiB':>9}  {'net/GiB':>7}  "
             f"{'ceiling':>7}  {'others':>6}  {'RSS MiB':>7}  ok/runs"]
    for s in summary:
        mib_s, ceiling = s["mib_s"] or 0.0, s["ceiling_mib_s"] or 0.0
        lines.append(
            f"{s['scenario']:<10}  {s['source']:<14}  {s['copier']:<16}  {mib_s:>6.1f}  "
            f"{s['copier_cpu_s_per_gib'] or 0:>7.2f}  {_beyond(s):>6}  {_loop(s):>5}  "
            f"{s['swift_cpu_s_per_gib'] or 0:>9.2f}  "
            f"{s['proxy_cpu_s_per_gib'] or 0:>9.2f}  {s['softirq_cpu_s_per_gib'] or 0:>7.2f}  "
            f"{ceiling:>7.0f}  {s['other_cores'] or 0:>6.2f}"
            f"  {s['peak_rss_bytes'] / MiB:>7.0f}  {s['ok_runs']}/{s['runs']}")
    return "\n".join(lines)


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")


def capped_table(summary: Iterable[dict[str, Any]], total_mb: float) -> str:
    """The capped link's runs (medians): MB/s against the link's total capacity (goal: xfer
    >= 90%), the copier's CPU per GiB and the cores busy meanwhile (a run starved of CPU
    cannot fill the link)."""
    lines = [f"{'source':<8}  {'copier':<26}  {'MB/s':>6}  {'of cap':>6}  {'cpu/GiB':>7}  "
             f"{'busy':>5}  {'others':>6}"]
    for entry in summary:
        if entry["scenario"] != "capped":
            continue
        mb_s = entry["mib_s"] * MiB / 1e6
        lines.append(f"{entry['source']:<8}  {entry['copier']:<26}  {mb_s:>6.1f}  "
                     f"{mb_s / total_mb:>6.0%}  {entry['copier_cpu_s_per_gib'] or 0:>7.2f}  "
                     f"{entry['busy_cores'] or 0:>5.2f}  {entry['other_cores'] or 0:>6.2f}")
    return "\n".join(lines)


def concurrency_table(rows: Iterable[dict[str, Any]]) -> str:
    lines = [f"{'scenario':<10}  {'source':<14}  {'processes':>9}  {'copies':>6}  {'MiB/s':>6}  "
             f"{'cpu/GiB':>7}  {'busy':>5}  {'others':>6}  peak RSS MiB per process"]
    for row in rows:
        rss = ", ".join(str(round(r / MiB)) for r in row.get("rss_per_process_bytes", []))
        lines.append(f"{row['scenario']:<10}  {row['source']:<14}  {row['processes']:>9}  "
                     f"{row['copies']:>6}  {row['mib_s']:>6.1f}  "
                     f"{row['copier_cpu_s_per_gib']:>7.2f}  {row['busy_cores']:>5.2f}  "
                     f"{row['other_cores']:>6.2f}  {rss}"
                     + ("" if row["ok"] else f"  FAILED {row['detail'][:120]}"))
    return "\n".join(lines)
