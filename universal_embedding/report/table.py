"""The results table shared by results.md, results.html, TensorBoard and the console.

Rows are domains (+ average); per kNN setup and protocol the columns are R@1, mMP@k, mAP@k
(percent, one decimal) and the skipped queries, as the paper writes them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

PROTOCOL_ORDER = ("separate", "common")


def columns(results: Mapping[str, float], knn_names: Sequence[str]) -> list[tuple[str, str]]:
    """(knn, protocol) pairs present in results, in knn then protocol order."""
    present = {tuple(key.split(":")[1:3]) for key in results}
    return [(knn, p) for knn in knn_names for p in PROTOCOL_ORDER if (p, knn) in present]


def metric_names(k: int) -> tuple[str, ...]:
    """Result-key metric names of every table column, in column order."""
    return ("top_1", f"mp_{k}", f"map_{k}", "skipped_queries")


def metric_titles(k: int) -> tuple[str, ...]:
    """Column titles of metric_names(k), as the paper writes them."""
    return ("R@1", f"mMP@{k}", f"mAP@{k}", "skipped")


def format_value(metric: str, value: float | None) -> str:
    """Percent with one decimal; skipped_queries as a count; 'n/a' for missing or NaN."""
    if value is None or math.isnan(value):
        return "n/a"
    return str(int(value)) if metric == "skipped_queries" else f"{100 * value:.1f}"


def format_table(
    results: Mapping[str, float], domains: Sequence[str], knn_names: Sequence[str], k: int
) -> str:
    """Markdown table, rows = domains + average; per knn and protocol: R@1, mMP@k, mAP@k (%,
    one decimal) and skipped queries; numbers right-aligned, columns padded to line up.
    Headers name the kNN setup only when there are several (title(): the one there is)."""
    cols = columns(results, knn_names)
    several = len({knn for knn, _ in cols}) > 1  # name the kNN setup only when it varies
    head = ["domain"] + [
        f"{knn} {p} {t}" if several else f"{p} {t}" for knn, p in cols for t in metric_titles(k)
    ]
    rows = [
        [d]
        + [
            format_value(m, results.get(f"{d}:{p}:{knn}:{m}"))
            for knn, p in cols
            for m in metric_names(k)
        ]
        for d in [*domains, "average"]
    ]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        padded = [cells[0].ljust(widths[0])]
        padded += [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "-" * (widths[0] + 2) + "|" + "|".join("-" * (w + 1) + ":" for w in widths[1:])
    return "\n".join([line(head), rule + "|", *map(line, rows)])


def title(results: Mapping[str, float], knn_names: Sequence[str], k: int) -> str:
    """'kNN results (k=5): test_knn': the line above a table, naming the kNN setups in it."""
    knns = dict.fromkeys(knn for knn, _ in columns(results, knn_names))
    return f"kNN results (k={k}): {', '.join(knns)}"


def titled_table(
    results: Mapping[str, float], domains: Sequence[str], knn_names: Sequence[str], k: int
) -> str:
    """The title line and the table below it: what the programs print when they finish."""
    return f"{title(results, knn_names, k)}\n{format_table(results, domains, knn_names, k)}"
