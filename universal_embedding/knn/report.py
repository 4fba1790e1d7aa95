"""Results files (results.json / .csv / .md), the printed table, and evaluate-from-config.

results.json is the flat UNED_SPEC section 7 dict (fractions; NaN -> null);
results.csv has one row per domain (+ average) and one column per
knn:protocol:metric; results.md is the paper-style table: R@1 and mMP@k in
percent with one decimal, one column pair per kNN setup and protocol.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np
from absl import logging

from universal_embedding.data.info_files import load_splits
from universal_embedding.knn import evaluate as knn_evaluate

_PROTOCOL_ORDER = ("separate", "common")


def _columns(results: Mapping[str, float], knn_names: Sequence[str]) -> list[tuple[str, str]]:
    """(knn, protocol) pairs present in results, in knn then protocol order."""
    present = {tuple(key.split(":")[1:3]) for key in results}
    return [(knn, p) for knn in knn_names for p in _PROTOCOL_ORDER if (p, knn) in present]


def _metric_names(k: int) -> tuple[str, ...]:
    return ("top_1", f"mp_{k}", f"map_{k}", "skipped_queries")


def _percent(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f}"


def format_table(
    results: Mapping[str, float], domains: Sequence[str], knn_names: Sequence[str], k: int
) -> str:
    """Markdown table: rows = domains + average, R@1 and mMP@k (%, one decimal) per knn/protocol."""
    cols = _columns(results, knn_names)
    head = ["domain"] + [f"{knn} {p} {m}" for knn, p in cols for m in ("R@1", f"mMP@{k}")]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for d in [*domains, "average"]:
        cells = [d]
        for knn, p in cols:
            for metric in ("top_1", f"mp_{k}"):
                cells.append(_percent(results.get(f"{d}:{p}:{knn}:{metric}")))
        lines.append("| " + " | ".join(cells) + " |")
    skipped = [
        f"{d} {knn} {p}: {int(results[key])}"
        for knn, p in cols
        for d in domains
        if (key := f"{d}:{p}:{knn}:skipped_queries") in results and results[key] > 0
    ]
    if skipped:
        lines += ["", "Queries left out (no relevant index image): " + ", ".join(skipped)]
    return "\n".join(lines)


def write_results(
    workdir: str,
    results: Mapping[str, float],
    domains: Sequence[str],
    knn_names: Sequence[str],
    k: int,
) -> dict[str, str]:
    """Write workdir/results.{json,csv,md}; returns {'json': path, 'csv': path, 'md': path}."""
    os.makedirs(workdir, exist_ok=True)
    paths = {ext: os.path.join(workdir, f"results.{ext}") for ext in ("json", "csv", "md")}
    clean = {key: (None if math.isnan(v) else float(v)) for key, v in results.items()}
    with open(paths["json"], "w") as f:
        json.dump(clean, f, indent=2)
    cols = [(knn, p, m) for knn, p in _columns(results, knn_names) for m in _metric_names(k)]
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["domain", *(f"{knn}:{p}:{m}" for knn, p, m in cols)])
        for d in [*domains, "average"]:
            row = [clean.get(f"{d}:{p}:{knn}:{m}") for knn, p, m in cols]
            writer.writerow([d, *("" if v is None else f"{v:.6g}" for v in row)])
    with open(paths["md"], "w") as f:
        f.write(f"# kNN results (k={k})\n\n{format_table(results, domains, knn_names, k)}\n")
    return paths


def evaluate_and_report(
    descriptors: Mapping[str, np.ndarray], config, workdir: str
) -> dict[str, float]:
    """Evaluate descriptors with the config's plan, write workdir/results.*, print the table."""
    plan = knn_evaluate.plan_from_config(config)
    keys = knn_evaluate.required_splits(plan.domains, plan.knn_names)
    infos = load_splits(config.info_files_dir, keys)
    labels = {key: info.labels for key, info in infos.items()}
    out = knn_evaluate.run_evaluation(descriptors, labels, **dataclasses.asdict(plan))
    paths = write_results(workdir, out.results, plan.domains, plan.knn_names, plan.k)
    table = format_table(out.results, plan.domains, plan.knn_names, plan.k)
    print(table, flush=True)
    logging.info(
        "kNN evaluation: validate %.1fs, search %.1fs, metrics %.1fs; wrote %s",
        out.timings["validate"],
        out.timings["search"],
        out.timings["metrics"],
        ", ".join(paths.values()),
    )
    return out.results
