"""The picture of one run: MiB/s per scenario, source and copier (medians), fan-out against
two sequential copies, and the goals as a table below. Needs matplotlib (the `bench` extra).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a benchmark machine

import matplotlib.pyplot as plt  # after the backend is chosen
from matplotlib.axes import Axes

from benchmarks import curves_chart

MiB = 1 << 20
VERDICT_COLOURS = {True: "#c8e6c9", False: "#ffcdd2", None: "#eeeeee"}
WHERE_WIDTH = 70


def _bar_groups(document: dict[str, Any]) -> tuple[list[str], dict[str, list[float]]]:
    """Group labels (scenario and source) and, per copier, one MiB/s per group (0: not run)."""
    groups: list[tuple[str, str]] = []
    values: dict[tuple[str, str], dict[str, float]] = {}
    for entry in document["summary"]:
        group = (entry["scenario"], entry["source"])
        if group not in values:
            groups.append(group)
            values[group] = {}
        values[group][entry["copier"]] = entry["mib_s"] or 0.0
    for entry in document.get("fanout_summary", []):
        group = (entry["scenario"], f"fan-out x2 ({entry['via']}),\n{entry['source']}")
        groups.append(group)
        # what the two copies write, per second of the whole comparison
        written = 2 * entry["size"] / MiB
        values[group] = {
            "xfer fan-out to 2 regions": written / entry["fanout_wall_seconds"]
            if entry["fanout_wall_seconds"] else 0.0,
            "xfer to 1 region, twice": written / entry["sequential_wall_seconds"]
            if entry["sequential_wall_seconds"] else 0.0}
    copiers = list(dict.fromkeys(c for group in groups for c in values[group]))
    bars = {c: [values[group].get(c, 0.0) for group in groups] for c in copiers}
    return [f"{scenario}\n{source}" for scenario, source in groups], bars


def _draw_bars(axes: Axes, labels: list[str], bars: dict[str, list[float]]) -> None:
    width = 0.8 / max(len(bars), 1)
    for index, (copier, heights) in enumerate(bars.items()):
        positions = [group + (index - (len(bars) - 1) / 2) * width for group in range(len(labels))]
        drawn = axes.bar(positions, heights, width, label=copier)
        axes.bar_label(drawn, labels=[f"{h:.0f}" if h else "" for h in heights], fontsize=6,
                       padding=1)
    tallest = max((h for heights in bars.values() for h in heights), default=0.0)
    axes.set_ylim(0, tallest * 1.25 or 1)  # room for the legend above the bars
    axes.set_xticks(range(len(labels)), labels, fontsize=7)
    axes.set_ylabel("MiB/s (median; fan-out: target MiB/s)")
    axes.legend(fontsize=7, ncols=min(len(bars), 4), loc="upper right")
    axes.grid(axis="y", alpha=0.3)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def _draw_goals(axes: Axes, goals: list[dict[str, Any]]) -> None:
    axes.axis("off")
    if not goals:
        return
    cells = [[g["goal"], _short(g["where"], WHERE_WIDTH),
              "n/a" if g["measured"] is None else f"{g['measured']:.2f}", g["target"],
              {True: "met", False: "NOT met", None: "n/a"}[g["met"]]] for g in goals]
    table = axes.table(cellText=cells, colLabels=["goal", "where", "measured", "target", "verdict"],
                       cellColours=[[VERDICT_COLOURS[g["met"]]] * 5 for g in goals],
                       colWidths=[0.28, 0.47, 0.07, 0.09, 0.07], loc="upper center",
                       cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(6.5)
    table.scale(1, 1.15)


def draw(document: dict[str, Any], path: Path) -> None:
    labels, bars = _bar_groups(document)
    goals = document.get("goals", [])
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(max(10.0, 1.4 * len(labels) + 4), 5 + 0.19 * len(goals)),
        height_ratios=[5, 0.5 + 0.19 * len(goals)])
    args = document["args"]
    subset = "" if document["full_run"] else "SUBSET (smoke run, not the full bench): "
    figure.suptitle(
        f"{subset}xfer bench {document['started'][:16]}Z on {document['cores']} cores: sources "
        f"{','.join(args['sources'])}, {args['repeat']} repeat(s), scenarios "
        f"{','.join(args['scenarios'])}", fontsize=9, color="#b71c1c" if subset else "black")
    _draw_bars(top, labels, bars)
    _draw_goals(bottom, goals)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    """Draw a results file again: `python -m benchmarks.chart benchmarks/results/<time>.json`."""
    for name in sys.argv[1:]:
        source = Path(name)
        document = json.loads(source.read_text())
        draw(document, source.with_suffix(".png"))
        print(f"picture in {source.with_suffix('.png')}")
        curves = source.with_name(f"{source.stem}-curves.png")
        if curves_chart.draw_curves(document, curves):
            print(f"planning curves in {curves}")


if __name__ == "__main__":
    main()
