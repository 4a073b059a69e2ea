"""The planning curves of one run, beside its main picture (`<time>-curves.png`): the capped
link's sweep (MB/s of each xfer setting and of the other copiers against the link's capacity),
the concurrency curve (aggregate MiB/s and peak RSS against copies at once), and, when the run
had several sizes, seconds per GiB and peak RSS against the size. Panels without data are left
out; no picture when none has any. Needs matplotlib (the `bench` extra).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # after the backend is chosen
from matplotlib.axes import Axes

MiB, GiB = 1 << 20, 1 << 30
SIZE_COPIER = "xfer-md5-sha512"


def _capped(axes: Axes, document: dict[str, Any]) -> None:
    entries = [e for e in document["summary"] if e["scenario"] == "capped"]
    total = document["capped_shape"]["total_mb"]
    labels = [f"{e['copier'].removeprefix('xfer-md5-sha512-')}\n{e['source']}" for e in entries]
    heights = [(e["mib_s"] or 0.0) * MiB / 1e6 for e in entries]
    drawn = axes.bar(range(len(entries)), heights,
                     color=["#1565c0" if e["copier"].startswith("xfer") else "#9e9e9e"
                            for e in entries])
    axes.bar_label(drawn, labels=[f"{h:.0f}" for h in heights], fontsize=6)
    axes.axhline(total, color="#b71c1c", linewidth=1, label=f"cap {total:g} MB/s")
    axes.axhline(0.9 * total, color="#b71c1c", linestyle="--", linewidth=1, label="90% (goal)")
    axes.set_xticks(range(len(entries)), labels, fontsize=6)
    axes.set_ylabel("MB/s (median)")
    shape = document["capped_shape"]
    axes.set_title(f"capped link: {shape['rtt_ms']:g} ms, {shape['rate_mb_per_connection']:g} "
                   f"MB/s per connection; xfer c<chunk>-s<segments in flight>", fontsize=8)
    axes.legend(fontsize=6)


def _concurrency(axes: Axes, document: dict[str, Any]) -> None:
    rows = document["concurrency"]
    one = [r for r in rows if r["processes"] == 1]
    axes.plot([r["copies"] for r in one], [r["mib_s"] for r in one], "o-", label="1 process")
    for row in rows:
        if row["processes"] > 1:
            axes.plot([row["copies"]], [row["mib_s"]], "s", color="#e65100",
                      label=f"{row['processes']} processes")
    axes.set_xlabel("copies at once")
    axes.set_ylabel("aggregate MiB/s")
    rss = axes.twinx()
    rss.plot([r["copies"] for r in one], [r["peak_rss_bytes"] / MiB for r in one], "x:",
             color="#6a1b9a", label="peak RSS, 1 process")
    rss.set_ylabel("peak RSS per process, MiB", fontsize=7)
    rss.set_ylim(bottom=0)
    rss.legend(fontsize=6, loc="upper left")
    axes.set_ylim(bottom=0)
    axes.set_title(f"concurrency ({rows[0]['scenario']}, {rows[0]['source']})", fontsize=8)
    axes.legend(fontsize=6, loc="lower right")


def _sizes(axes: Axes, document: dict[str, Any]) -> None:
    entries = sorted((e for e in document["summary"] if e["copier"] == SIZE_COPIER
                      and e["mib_s"]), key=lambda e: e["size"])
    for scenario in dict.fromkeys(e["scenario"] for e in entries):
        mine = [e for e in entries if e["scenario"] == scenario]
        axes.plot([e["size"] / GiB for e in mine], [e["wall_seconds"] / (e["size"] / GiB)
                                                    for e in mine], "o-", label=scenario)
    axes.set_xlabel("GiB")
    axes.set_ylabel(f"seconds per GiB ({SIZE_COPIER})")
    axes.set_ylim(bottom=0)
    axes.set_title("size", fontsize=8)
    axes.legend(fontsize=6)


def _panels(document: dict[str, Any]) -> list[Callable[[Axes, dict[str, Any]], None]]:
    panels: list[Callable[[Axes, dict[str, Any]], None]] = []
    if any(e["scenario"] == "capped" for e in document["summary"]):
        panels.append(_capped)
    if document.get("concurrency"):
        panels.append(_concurrency)
    if len({e["size"] for e in document["summary"] if e["copier"] == SIZE_COPIER}) > 1:
        panels.append(_sizes)
    return panels


def draw_curves(document: dict[str, Any], path: Path) -> bool:
    """The picture, if the run has any curve; whether it was drawn."""
    panels = _panels(document)
    if not panels:
        return False
    figure, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.2), squeeze=False)
    for panel, where in zip(panels, axes[0], strict=True):
        panel(where, document)
    figure.suptitle(f"xfer bench {document['started'][:16]}Z: planning curves", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True
