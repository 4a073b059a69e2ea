"""The goals of issue 11, each as a ratio computed from one run's medians, met or not, and,
where one is not met, what the CPU figures say limits it.

    co-located MD5+SHA-512 vs best rclone             >= 1.0
    co-located MD5 vs best rclone                     >= 1.15
    emulated link, MD5+SHA-512 vs best rclone         >= 3
    xfer CPU-s/GiB vs the one-core floor of its hashes <= 1.3
    peak RSS with 1 GiB source segments kept          < 200 MiB, within 10% of 100 MiB segments
    fan-out to 2 regions vs two sequential copies     >= 1.6, the source read once
    rate cap held over a 30 s copy                    within 5%

A throughput goal out of reach on 2 cores shows as such: the MiB/s it needs times what a GiB
costs in the run (Swift, proxies, xfer, the kernel's loopback TCP) is more than 2 cores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.report import CORES, MiB, hash_floor

RCLONES = ("rclone", "rclone-100M")
FLOOR_GOAL = 1.3
RSS_LIMIT_MIB, RSS_SPREAD = 200, 0.10  # MiB; and within 10% either way
FANOUT_GOAL = 1.6
RATE_TOLERANCE = 0.05
# How exactly "source read once" is measured: the source proxy's log counts the bytes of a
# Swift source exactly; a file's reads are rchar less a one-byte upload's (Python's own reads
# of modules and configs, which vary by a few KiB between runs).
READ_SLACK = {"one job": 0.0, "xfer upload": 0.001}
SHARED_CORES = 0.3  # others' CPU above which a run's speed says little about xfer's


@dataclass(frozen=True)
class Goal:
    goal: str
    where: str
    measured: float | None  # the ratio (MiB for the RSS limit)
    target: str
    met: bool | None  # None: not measured in this run
    limit: str = ""  # what limits it, from the CPU figures; or why it was not measured


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _cost(entry: dict[str, Any]) -> str:
    return (f"{entry['cost_cpu_s_per_gib']:.1f} CPU-s/GiB (Swift {entry['swift_cpu_s_per_gib']:.1f}"
            f", {entry['copier']} {entry['copier_cpu_s_per_gib']:.1f}, proxies "
            f"{entry['proxy_cpu_s_per_gib']:.1f}, kernel net {entry['softirq_cpu_s_per_gib']:.1f})")


def throughput_limit(xfer: dict[str, Any], needed_mib_s: float, rclone: dict[str, Any]) -> str:
    """What the CPU figures say about reaching `needed_mib_s` with xfer's cost per GiB."""
    cores = xfer["cost_cpu_s_per_gib"] * needed_mib_s / 1024
    text = f"{needed_mib_s:.0f} MiB/s at {_cost(xfer)} needs {cores:.2f} cores"
    if xfer["proxy_cpu_s_per_gib"]:  # the emulation's proxies would not be on a real link
        unshaped = (xfer["cost_cpu_s_per_gib"] - xfer["proxy_cpu_s_per_gib"]) * needed_mib_s / 1024
        text += f" ({unshaped:.2f} without the link emulation's proxies)"
    text += (f": out of reach on {CORES} cores" if cores > CORES
             else f": within {CORES} cores, so not CPU alone (busy {xfer['busy_cores']:.2f} cores)")
    if xfer["other_cores"] > SHARED_CORES:
        text += (f"; other programs took {xfer['other_cores']:.2f} cores meanwhile: "
                 "the machine was shared")
    return text + f"; rclone's GiB costs {rclone['cost_cpu_s_per_gib']:.1f} CPU-s"


def _throughput_goals(by_key: dict[tuple[str, str, str], dict[str, Any]],
                      places: Sequence[tuple[str, str]]) -> list[Goal]:
    wanted = (("colocated", "xfer-md5-sha512", "co-located MD5+SHA-512 vs best rclone", 1.00),
              ("colocated", "xfer-md5", "co-located MD5 vs best rclone", 1.15),
              ("emulated", "xfer-md5-sha512", "emulated link, MD5+SHA-512 vs best rclone", 3.00))
    goals = []
    for scenario, copier, name, bound in wanted:
        for place_scenario, source in places:
            if place_scenario != scenario:
                continue
            xfer = by_key.get((scenario, source, copier))
            rclones = [e for c in RCLONES if (e := by_key.get((scenario, source, c))) and e["mib_s"]]
            if not xfer or not xfer["mib_s"] or not rclones:
                goals.append(Goal(name, source, None, f">= {bound:.2f}x", None,
                                  f"not measured: needs {copier} and rclone runs that succeeded"))
                continue
            best = max(rclones, key=lambda e: e["mib_s"])
            ratio = xfer["mib_s"] / best["mib_s"]
            limit = "" if ratio >= bound else throughput_limit(xfer, bound * best["mib_s"], best)
            goals.append(Goal(name, f"{source} ({best['copier']} {best['mib_s']:.0f} MiB/s)",
                              ratio, f">= {bound:.2f}x", ratio >= bound, limit))
    return goals


def _floor_goals(summary: Sequence[dict[str, Any]], floor: dict[str, dict[str, float]]) -> list[Goal]:
    goals = []
    for entry in summary:
        if entry["copier"] not in ("xfer-md5", "xfer-md5-sha512") or not entry["mib_s"]:
            continue
        cost, names = hash_floor(entry, floor)
        spent = entry["copier_cpu_s_per_gib"]
        ratio = spent / cost
        limit = "" if ratio <= FLOOR_GOAL else (
            f"the hashes take {cost:.2f} of xfer's {spent:.2f} CPU-s/GiB; the other "
            f"{spent - cost:.2f} go to HTTP, buffers and the event loop")
        goals.append(Goal("xfer CPU-s/GiB vs one-core floor of its hashes",
                          f"{entry['scenario']} {entry['source']} {entry['copier']}: {names}",
                          ratio, f"<= {FLOOR_GOAL:g}x", ratio <= FLOOR_GOAL, limit))
    return goals


def _rss_goals(summary: Sequence[dict[str, Any]], memory_bound: int) -> list[Goal]:
    goals = []
    for copier in ("xfer-md5", "xfer-md5-sha512"):
        kept = [e for e in summary if e["copier"] == copier and e["source"].startswith("slo1024")]
        small = [e for e in summary if e["copier"] == copier and e["source"].startswith("slo100 ")]
        if not kept:
            continue
        peak = max(e["peak_rss_bytes"] for e in kept)
        all_kept = all(e["segments_kept"] for e in kept)
        idle = max(e["rss_before_job_bytes"] for e in kept)
        context = (f"{idle / MiB:.0f} MiB before the job; the copy's buffers are bounded by "
                   f"{memory_bound / MiB:.0f} MiB")
        where = f"{copier}, {kept[0]['source']}" + ("" if all_kept else " (segments NOT kept)")
        met = peak / MiB < RSS_LIMIT_MIB and all_kept
        goals.append(Goal("peak RSS, 1 GiB source segments kept (MiB)", where, peak / MiB,
                          f"< {RSS_LIMIT_MIB}", met, "" if met else context))
        if small:
            base = max(e["peak_rss_bytes"] for e in small)
            ratio = peak / base
            close = abs(ratio - 1) <= RSS_SPREAD
            goals.append(Goal(
                "peak RSS, 1 GiB vs 100 MiB source segments", copier, ratio,
                f"1 +- {RSS_SPREAD:g}", close, "" if close else
                f"{peak / MiB:.0f} MiB with 1 GiB segments, {base / MiB:.0f} MiB with 100 MiB "
                f"({small[0]['source']}); {context}"))
    return goals


def _fanout_goals(fanout: Sequence[dict[str, Any]], missing: dict[str, str]) -> list[Goal]:
    goals = [Goal(name, f"{via}: -", None, target, None, missing[run])
             for run, via in (("fanout", "one job"), ("upload", "xfer upload")) if run in missing
             for name, target in ALL_GOALS if name.startswith("fan-out")]
    for entry in fanout:
        where = f"{entry['via']}, {entry['scenario']} {entry['source']}"
        if not entry["ok_runs"]:
            goals += [Goal(name, where, None, target, None, "every fan-out comparison failed")
                      for name, target in ALL_GOALS if name.startswith("fan-out")]
            continue
        speedup = entry["speedup"]
        limit = ""
        if speedup is not None and speedup < FANOUT_GOAL:
            needed_wall = entry["sequential_wall_seconds"] / FANOUT_GOAL
            cores = entry["fanout_cpu_seconds"] / needed_wall
            limit = (f"{FANOUT_GOAL:g}x means {needed_wall:.1f} s; at the fan-out run's "
                     f"{entry['fanout_cpu_seconds']:.0f} CPU-s that needs {cores:.2f} cores"
                     + (f": out of reach on {CORES} cores" if cores > CORES
                        else f": within {CORES} cores, so not CPU alone"))
            others = entry.get("fanout_other_cores") or 0.0
            if others > SHARED_CORES:
                limit += (f"; other programs took {others:.2f} cores meanwhile: the machine "
                          "was shared")
        goals.append(Goal("fan-out to 2 regions vs two sequential copies", where, speedup,
                          f">= {FANOUT_GOAL:g}x", None if speedup is None else speedup >= FANOUT_GOAL,
                          limit))
        reads = entry["fanout_source_reads"]
        slack = READ_SLACK[entry["via"]]
        context = (f"two sequential copies read {entry['sequential_source_reads']:.3f}x"
                   + (f"; measured to {slack:g}x (rchar)" if slack else ""))
        goals.append(Goal("fan-out: source bytes read / source size", where, reads,
                          f"<= {1 + slack:g}x", reads <= 1 + slack, context))
    return goals


def _rate_goals(rate_rows: Sequence[dict[str, Any]], missing: dict[str, str]) -> list[Goal]:
    goals = []
    for row in rate_rows:
        achieved, cap = row["achieved_mb_s"], row["cap_mb_s"]
        ratio = None if achieved is None or not row["ok"] else achieved / cap
        windows = (f"{row['window_seconds']:g} s windows {_fmt(row['slowest_window_mb_s'], 1)}-"
                   f"{_fmt(row['fastest_window_mb_s'], 1)} MB/s; wall {_fmt(row['wall_mb_s'], 1)}, "
                   f"job timestamps {_fmt(row['job_mb_s'], 1)} MB/s")
        met = None if ratio is None else abs(ratio - 1) <= RATE_TOLERANCE
        goals.append(Goal(f"rate cap held ({row['cap_kind']} cap)",
                          f"{cap:g} MB/s, {row['wall_seconds']:.0f} s copy of {row['source']}",
                          ratio, f"1 +- {RATE_TOLERANCE:g}", met, windows))
    if "ratecap-job" in missing:
        goals.append(Goal("rate cap held (job cap)", "-", None, f"1 +- {RATE_TOLERANCE:g}",
                          None, missing["ratecap-job"]))
    return goals


IMAGE_GOAL = "image copy: xfer flow vs glance-download, Glance's default do_secure_hash"
IMAGE_NO_HASH_GOAL = "image copy: xfer flow vs glance-download, do_secure_hash False"
IMAGE_GOALS = {True: (IMAGE_GOAL, 2.5), False: (IMAGE_NO_HASH_GOAL, 4.0)}  # issue 21


def _glance_goals(glance: dict[str, Any] | None) -> list[Goal]:
    if not glance:
        return []
    summary = glance["summary"]
    size = glance["source"]["size"] / 2**30
    where = (f"{size:.2f} GiB Glance image, request to active: xfer "
             f"{summary['xfer MB/s']} MB/s, glance-download {summary['glance-download MB/s']} MB/s")
    ratio = summary["ratio"]
    kept = {run["copier"]: run["kept"] for run in glance["runs"]}
    first = glance["runs"][0]
    limit = (f"fields and properties kept, of {len(first['dropped']) + first['kept']}: "
             + ", ".join(f"{name} {count}" for name, count in kept.items()))
    name, target = IMAGE_GOALS[glance.get("do_secure_hash", True)]
    goals = [Goal(name, where, ratio, f">= {target:.2f}x",
                  None if ratio is None else ratio >= target, limit)]
    through = summary.get("via-xfer ratio")
    if through is not None:
        total, staged = summary["via-xfer seconds"], summary["via-xfer staging seconds"]
        goals.append(Goal(
            "image import: glance-download through xfer vs plain (issue 10)",
            f"{size:.2f} GiB, request to active: through xfer "
            f"{summary['glance-download-via-xfer MB/s']} MB/s, plain "
            f"{summary['glance-download MB/s']} MB/s", through, ">= 1.00x", through >= 1.0,
            f"xfer's verified stream (Glance's staging) took {staged:.1f} s of {total:.1f} s; "
            f"the other {total - staged:.1f} s are Glance's single-stream store upload and "
            f"its bookkeeping"))
    return goals


# Every goal, so that one this session did not run still has its line.
ALL_GOALS = (
    ("co-located MD5+SHA-512 vs best rclone", ">= 1.00x"),
    ("co-located MD5 vs best rclone", ">= 1.15x"),
    ("emulated link, MD5+SHA-512 vs best rclone", ">= 3.00x"),
    ("xfer CPU-s/GiB vs one-core floor of its hashes", f"<= {FLOOR_GOAL:g}x"),
    ("peak RSS, 1 GiB source segments kept (MiB)", f"< {RSS_LIMIT_MIB}"),
    ("peak RSS, 1 GiB vs 100 MiB source segments", f"1 +- {RSS_SPREAD:g}"),
    ("fan-out to 2 regions vs two sequential copies", f">= {FANOUT_GOAL:g}x"),
    ("fan-out: source bytes read / source size", "<= 1x"),
    ("rate cap held (process cap)", f"1 +- {RATE_TOLERANCE:g}"),
    (IMAGE_GOAL, ">= 2.50x"),
    (IMAGE_NO_HASH_GOAL, ">= 4.00x"),
    ("image import: glance-download through xfer vs plain (issue 10)", ">= 1.00x"),
)


def compute_goals(summary: Sequence[dict[str, Any]], floor: dict[str, dict[str, float]],
                  fanout: Sequence[dict[str, Any]], rate_rows: Sequence[dict[str, Any]],
                  missing: dict[str, str], memory_bound: int,
                  glance: dict[str, Any] | None = None,
                  glance_no_hash: dict[str, Any] | None = None) -> list[Goal]:
    by_key = {(e["scenario"], e["source"], e["copier"]): e for e in summary}
    places = sorted({(e["scenario"], e["source"]) for e in summary})
    found = (_throughput_goals(by_key, places) + _floor_goals(summary, floor)
             + _rss_goals(summary, memory_bound) + _fanout_goals(fanout, missing)
             + _rate_goals(rate_rows, missing) + _glance_goals(glance)
             + [goal for goal in _glance_goals(glance_no_hash) if goal.goal == IMAGE_NO_HASH_GOAL])
    names = {goal.goal for goal in found}
    not_run = [Goal(name, "-", None, target, None, "not run in this session (see --help)")
               for name, target in ALL_GOALS if name not in names]
    order = {name: index for index, (name, _) in enumerate(ALL_GOALS)}
    return sorted(found + not_run, key=lambda goal: order.get(goal.goal, len(order)))


def goals_table(goals: Sequence[Goal]) -> str:
    width = max((len(g.goal) for g in goals), default=10)
    lines = []
    for goal in goals:
        verdict = {True: "met", False: "NOT met", None: "n/a"}[goal.met]
        lines.append(f"{goal.goal:<{width}}  {_fmt(goal.measured):>7}  {goal.target:<9}  "
                     f"{verdict:<7}  {goal.where}")
        if goal.limit:
            lines.append(f"{'':<{width}}    {goal.limit}")
    return "\n".join(lines)


def as_json(goals: Sequence[Goal]) -> list[dict[str, Any]]:
    return [asdict(goal) for goal in goals]

