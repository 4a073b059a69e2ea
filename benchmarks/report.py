"""The hashing floor, the results table, the targets' ratios and the JSON file."""

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


def derive(row: dict[str, Any]) -> dict[str, Any]:
    """Per-GiB and throughput figures of one measured run (added to the row)."""
    size, wall = row["size"], row["wall_seconds"]
    swift = sum(v for k, v in row["cpu_by_process"].items() if k.endswith("-server"))
    proxies = sum(v for k, v in row["cpu_by_process"].items() if k.startswith("shaping"))
    copier = per_gib(row["copier_cpu_seconds"], size)
    row["mib_s"] = round(size / MiB / wall, 1) if row["ok"] else 0.0
    row["copier_cpu_s_per_gib"] = round(copier, 2)
    row["swift_cpu_s_per_gib"] = round(per_gib(swift, size), 2)
    row["proxy_cpu_s_per_gib"] = round(per_gib(proxies, size), 2)
    cost = per_gib(swift + proxies, size) + copier
    row["ceiling_mib_s"] = round(CORES / cost * 1024, 1) if cost > 0 else None
    return row


COLUMNS: tuple[tuple[str, str, Callable[[dict[str, Any]], str]], ...] = (
    ("scenario", "<10", lambda r: r["scenario"]),
    ("GiB", ">3", lambda r: f"{r['size'] / GiB:g}"),
    ("copier", "<16", lambda r: r["copier"]),
    ("#", ">1", lambda r: str(r["repeat"])),
    ("MiB/s", ">6", lambda r: f"{r['mib_s']:.1f}" if r["ok"] else "FAIL"),
    ("wall s", ">6", lambda r: f"{r['wall_seconds']:.1f}"),
    ("cpu/GiB", ">7", lambda r: f"{r['copier_cpu_s_per_gib']:.2f}"),
    ("swift/GiB", ">9", lambda r: f"{r['swift_cpu_s_per_gib']:.2f}"),
    ("proxy/GiB", ">9", lambda r: f"{r['proxy_cpu_s_per_gib']:.2f}"),
    ("busy cores", ">10", lambda r: f"{r['busy_cores']:.2f}"),
    ("softirq", ">7", lambda r: f"{r.get('softirq_cores', 0):.2f}"),
    ("others", ">6", lambda r: f"{r['other_cores']:.2f}"),
    ("RSS MiB", ">7", lambda r: f"{r['peak_rss_bytes'] / MiB:.0f}"),
    ("ceiling", ">7", lambda r: f"{r['ceiling_mib_s'] or 0:.0f}"),
    ("md5 verified", "<13", lambda r: r["md5_verified"]),
    ("target", "<6", lambda r: r["target_kind"]),
)


def table(rows: Iterable[dict[str, Any]]) -> str:
    header = "  ".join(f"{name:{align}}" for name, align, _ in COLUMNS)
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append("  ".join(f"{cell(row):{align}}" for _, align, cell in COLUMNS))
    return "\n".join(lines)


def _median(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r["ok"]]
    return statistics.median(values) if values else None


def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Medians over repeats, per scenario, size and copier."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["scenario"], row["size"], row["copier"]), []).append(row)
    summary = []
    for (scenario, size, copier), group in groups.items():
        entry: dict[str, Any] = {"scenario": scenario, "size": size, "copier": copier,
                                 "runs": len(group), "ok_runs": sum(r["ok"] for r in group)}
        for key in ("mib_s", "copier_cpu_s_per_gib", "swift_cpu_s_per_gib",
                    "proxy_cpu_s_per_gib", "ceiling_mib_s", "busy_cores", "other_cores"):
            entry[key] = _median(group, key)
        entry["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in group)
        summary.append(entry)
    return summary


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return numerator / denominator


def target_ratios(summary: Sequence[dict[str, Any]],
                  floor: dict[str, dict[str, float]]) -> list[tuple[str, str, float | None]]:
    """(what, target, measured ratio) for the lead's targets, per scenario and size."""
    by_key = {(s["scenario"], s["size"], s["copier"]): s for s in summary}
    md5_cost = floor["md5"]["cpu_s_per_gib"]
    sha_cost = md5_cost + floor["sha512"]["cpu_s_per_gib"]
    ratios: list[tuple[str, str, float | None]] = []
    for scenario, size in sorted({(s["scenario"], s["size"]) for s in summary}):
        def get(copier: str, key: str) -> float | None:
            entry = by_key.get((scenario, size, copier))  # noqa: B023
            return entry[key] if entry else None
        rclone = max((v for v in (get("rclone", "mib_s"), get("rclone-100M", "mib_s")) if v),
                     default=None)
        staged = get("staged", "mib_s")
        md5, sha = get("xfer-md5", "mib_s"), get("xfer-md5-sha512", "mib_s")
        where = f"{scenario} {size / GiB:g} GiB"
        if scenario == "colocated":
            ratios += [
                (f"{where}: xfer-md5 / best rclone", ">= 1.0", _ratio(md5, rclone)),
                (f"{where}: xfer-md5-sha512 / best rclone", ">= 0.85", _ratio(sha, rclone)),
                (f"{where}: xfer-md5-sha512 / its ceiling", ">= 0.80",
                 _ratio(sha, get("xfer-md5-sha512", "ceiling_mib_s"))),
                (f"{where}: xfer-md5 / staged", ">= 1.3", _ratio(md5, staged)),
                (f"{where}: xfer-md5-sha512 / staged", ">= 1.3", _ratio(sha, staged)),
            ]
        else:
            ratios += [
                (f"{where}: xfer-md5 / best rclone", ">= 3", _ratio(md5, rclone)),
                (f"{where}: xfer-md5 / staged", ">= 3", _ratio(md5, staged)),
                (f"{where}: xfer-md5-sha512 / best rclone", ">= 3", _ratio(sha, rclone)),
                (f"{where}: xfer-md5-sha512 / staged", ">= 3", _ratio(sha, staged)),
            ]
        ratios += [
            (f"{where}: xfer-md5 CPU / MD5 cost", "<= 1.5",
             _ratio(get("xfer-md5", "copier_cpu_s_per_gib"), md5_cost)),
            (f"{where}: xfer-md5-sha512 CPU / (MD5+SHA-512) cost", "<= 1.5",
             _ratio(get("xfer-md5-sha512", "copier_cpu_s_per_gib"), sha_cost)),
            # Segments cut anew need their own MD5 (the PUT's ETag): a second MD5 pass.
            (f"{where}: xfer-md5 CPU / (2 x MD5) cost", "(segment ETags too)",
             _ratio(get("xfer-md5", "copier_cpu_s_per_gib"), 2 * md5_cost)),
            (f"{where}: xfer-md5-sha512 CPU / (2 x MD5 + SHA-512) cost", "(segment ETags too)",
             _ratio(get("xfer-md5-sha512", "copier_cpu_s_per_gib"), sha_cost + md5_cost)),
            (f"{where}: xfer-md5 uvloop / asyncio MiB/s", "(> 1: uvloop faster)",
             _ratio(get("xfer-md5-uvloop", "mib_s"), md5)),
        ]
    ratios += _rss_ratios(summary)
    return ratios


def _rss_ratios(summary: Sequence[dict[str, Any]]) -> list[tuple[str, str, float | None]]:
    xfer = [s for s in summary if s["copier"].startswith("xfer")]
    if not xfer:
        return []
    peak = max(s["peak_rss_bytes"] for s in xfer)
    ratios: list[tuple[str, str, float | None]] = [
        ("xfer peak RSS, MiB (any run)", "< 200", peak / MiB)]
    for copier in sorted({s["copier"] for s in xfer}):
        by_size = {s["size"]: s["peak_rss_bytes"] for s in xfer if s["copier"] == copier}
        if 4 * GiB in by_size and GiB in by_size:
            ratios.append((f"{copier} peak RSS 4 GiB / 1 GiB", "<= 1.10",
                           _ratio(by_size[4 * GiB], by_size[GiB])))
    return ratios


def summary_table(summary: Sequence[dict[str, Any]]) -> str:
    lines = [f"{'scenario':<10}  {'GiB':>3}  {'copier':<16}  {'MiB/s':>6}  {'cpu/GiB':>7}  "
             f"{'swift/GiB':>9}  {'proxy/GiB':>9}  {'ceiling':>7}  {'others':>6}  {'RSS MiB':>7}"
             "  ok/runs"]
    for s in summary:
        mib_s, ceiling = s["mib_s"] or 0.0, s["ceiling_mib_s"] or 0.0
        lines.append(
            f"{s['scenario']:<10}  {s['size'] / GiB:>3g}  {s['copier']:<16}  {mib_s:>6.1f}  "
            f"{s['copier_cpu_s_per_gib'] or 0:>7.2f}  {s['swift_cpu_s_per_gib'] or 0:>9.2f}  "
            f"{s['proxy_cpu_s_per_gib'] or 0:>9.2f}  {ceiling:>7.0f}  {s['other_cores'] or 0:>6.2f}"
            f"  {s['peak_rss_bytes'] / MiB:>7.0f}  {s['ok_runs']}/{s['runs']}")
    return "\n".join(lines)


def ratios_table(ratios: Sequence[tuple[str, str, float | None]]) -> str:
    width = max((len(what) for what, _, _ in ratios), default=10)
    return "\n".join(f"{what:<{width}}  {'n/a' if value is None else f'{value:.2f}':>7}  "
                     + (f"target {target}" if target[0] in "<>" else target)
                     for what, target, value in ratios)


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
