"""Results files (results.json / .csv / .md / .html), the printed table, TensorBoard summaries.

results.json is the flat UNED_SPEC section 7 dict (fractions; NaN -> null) plus one "provenance"
object (package versions, git commit, devices: writers/provenance.py); results.csv has one
row per domain (+ average) and one column per knn:protocol:metric; results.md is the
paper-style table: R@1, mMP@k and mAP@k in percent with one decimal and the skipped queries,
four columns per kNN setup and protocol; results.html (knn/results_html.py) has the same table
and a per-domain bar chart; results_original.json is the original code's layout
(original/descriptor_files.py) for scripts written for it.
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
from universal_embedding.original import descriptor_files
from universal_embedding.writers.provenance import provenance

_PROTOCOL_ORDER = ("separate", "common")
_MD_NOTE = (
    "Percent, one decimal; skipped: queries without any relevant index image, left out of "
    "the means (the average row gives their total). results.html adds a chart."
)


def _columns(results: Mapping[str, float], knn_names: Sequence[str]) -> list[tuple[str, str]]:
    """(knn, protocol) pairs present in results, in knn then protocol order."""
    present = {tuple(key.split(":")[1:3]) for key in results}
    return [(knn, p) for knn in knn_names for p in _PROTOCOL_ORDER if (p, knn) in present]


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
    cols = _columns(results, knn_names)
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


# TensorBoard prefixes of the original tools: knn/ for R@1, mp/ for mMP@k, map/ for mAP@k.
_PREFIXES = (("top_1", "knn"), ("mp_", "mp"), ("map_", "map"), ("skipped_queries", "skipped"))


def summary_scalars(results: Mapping[str, float]) -> dict[str, float]:
    """Results as TensorBoard scalars named like the original: knn/..., mp/..., map/...

    skipped/... only where queries were skipped: a flat zero per domain says nothing."""
    out = {}
    for key, value in results.items():
        metric = key.rsplit(":", 1)[-1]
        for start, prefix in _PREFIXES:
            if metric.startswith(start):
                if prefix != "skipped" or value > 0:
                    out[f"{prefix}/{key}"] = float(value)
                break
    return out


def title(results: Mapping[str, float], knn_names: Sequence[str], k: int) -> str:
    """'kNN results (k=5): test_knn': the line above a table, naming the kNN setups in it."""
    knns = dict.fromkeys(knn for knn, _ in _columns(results, knn_names))
    return f"kNN results (k={k}): {', '.join(knns)}"


def summary_texts(results: Mapping[str, float], plan: knn_evaluate.EvalPlan) -> dict[str, str]:
    """{'results/test': markdown table}: the final test as one TensorBoard text, not dots."""
    table = format_table(results, plan.domains, plan.knn_names, plan.k)
    return {"results/test": f"{title(results, plan.knn_names, plan.k)}, percent\n\n{table}"}


def write_results(
    workdir: str,
    results: Mapping[str, float],
    domains: Sequence[str],
    knn_names: Sequence[str],
    k: int,
) -> dict[str, str]:
    """Write workdir/results.{json,csv,md,html} and results_original.json (the original's
    [top_1, mp_k, map_k] layout, rounded as it rounded); returns {'json': path, ...}."""
    os.makedirs(workdir, exist_ok=True)
    exts = ("json", "csv", "md", "html")
    paths = {ext: os.path.join(workdir, f"results.{ext}") for ext in exts}
    clean = {key: (None if math.isnan(v) else float(v)) for key, v in results.items()}
    with open(paths["json"], "w") as f:
        json.dump({**clean, "provenance": provenance()}, f, indent=2)
    cols = [(knn, p, m) for knn, p in _columns(results, knn_names) for m in metric_names(k)]
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["domain", *(f"{knn}:{p}:{m}" for knn, p, m in cols)])
        for d in [*domains, "average"]:
            row = [clean.get(f"{d}:{p}:{knn}:{m}") for knn, p, m in cols]
            writer.writerow([d, *("" if v is None else f"{v:.6g}" for v in row)])
    table = format_table(results, domains, knn_names, k)
    with open(paths["md"], "w", encoding="utf-8") as f:
        f.write(f"# {title(results, knn_names, k)}\n\n{table}\n\n{_MD_NOTE}\n")
    from universal_embedding.knn import results_html  # it imports this module

    with open(paths["html"], "w", encoding="utf-8") as f:
        f.write(results_html.render(results, domains, _columns(results, knn_names), k))
    paths["original"] = descriptor_files.write_results_original(workdir, results)
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
    print(f"{title(out.results, plan.knn_names, plan.k)}\n{table}", flush=True)
    logging.info(
        "kNN evaluation: validate %.1fs, search %.1fs, metrics %.1fs; wrote %s",
        out.timings["validate"],
        out.timings["search"],
        out.timings["metrics"],
        ", ".join(paths.values()),
    )
    return out.results
