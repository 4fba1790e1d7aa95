"""The markdown table of benchmarks/full_scale.py runs: one row per stage, each scale's seconds,
peak RSS and output bytes, and the growth from the second-largest scale to the largest.

    .venv/bin/python benchmarks/full_scale_table.py S001.json S01.json S1.json
"""

from __future__ import annotations

import json
import sys


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f}"


def table(reports: list[dict]) -> str:
    """One row per stage of any run (first seen order; '-' where a run lacks it); growth =
    cost at the largest scale / cost at the one before (seconds and peak RSS)."""
    reports = sorted(reports, key=lambda r: r["scale"])
    by_scale = [{s["name"]: s for s in r["stages"]} for r in reports]
    scales = [r["scale"] for r in reports]
    head = ["stage"]
    for s in scales:
        head += [f"s @{s:g}", f"RSS GB @{s:g}", f"out GB @{s:g}"]
    head += [f"growth s ({scales[-1]:g}/{scales[-2]:g})", "growth RSS"] if len(scales) > 1 else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    names = list(dict.fromkeys(s["name"] for r in reports for s in r["stages"]))
    for name in names:
        cells = [name]
        for runs in by_scale:
            run = runs.get(name)
            cells += (
                [f"{run['seconds']:.1f}", _gb(run["peak_rss_bytes"]), _gb(run["output_bytes"])]
                if run
                else ["-"] * 3
            )
        if len(scales) > 1:
            before, now = by_scale[-2].get(name), by_scale[-1].get(name)
            if before and now:
                cells.append(f"{now['seconds'] / max(before['seconds'], 1e-9):.1f}x")
                cells.append(f"{now['peak_rss_bytes'] / max(before['peak_rss_bytes'], 1):.1f}x")
            else:
                cells += ["-", "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    runs = []
    for path in sys.argv[1:]:
        with open(path) as f:
            runs.append(json.load(f))
    print(table(runs))
