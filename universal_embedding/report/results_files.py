"""Results files (results.json / .csv / .md / .html) and the TensorBoard summaries of results.

results.json is the flat results dict (fractions; NaN -> null) plus one "provenance" object
(package versions, git commit, devices: writers/provenance.py); results.csv has one row per
domain (+ average) and one column per knn:protocol:metric; results.md is the paper-style
table (report/table.py); results.html (report/results_page.py) has the same table and a
per-domain bar chart; results_original.json is the original code's layout
(original/descriptor_files.py) for scripts written for it.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import os
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from absl import logging

from universal_embedding.knn import descriptors as knn_descriptors
from universal_embedding.knn import evaluate as knn_evaluate
from universal_embedding.original import descriptor_files
from universal_embedding.report import results_page
from universal_embedding.report.table import columns, format_table, metric_names, title
from universal_embedding.writers.provenance import provenance

_MD_NOTE = (
    "Percent, one decimal; skipped: queries without any relevant index image, left out of "
    "the means (the average row gives their total). results.html adds a chart."
)

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


def summary_texts(results: Mapping[str, float], plan: knn_evaluate.EvalPlan) -> dict[str, str]:
    """{'results/test': markdown table}: the final test as one TensorBoard text, not dots."""
    table = format_table(results, plan.domains, plan.knn_names, plan.k)
    return {"results/test": f"{title(results, plan.knn_names, plan.k)}, percent\n\n{table}"}


def run_identity(workdir: str, run: Mapping[str, str] | None = None) -> dict[str, str]:
    """{'workdir': its folder name, 'date': now (UTC, to the minute)} updated with `run`
    (the caller's 'model', 'checkpoint', ...): what titles results.html."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    name = os.path.basename(os.path.normpath(os.path.abspath(workdir)))
    return {"workdir": name, "date": now, **(run or {})}


def write_results(
    workdir: str,
    results: Mapping[str, float],
    domains: Sequence[str],
    knn_names: Sequence[str],
    k: int,
    run: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Write workdir/results.{json,csv,md,html} and results_original.json (the original's
    [top_1, mp_k, map_k] layout, rounded as it rounded); returns {'json': path, ...}.

    run: the model and checkpoint evaluated ({'model': ..., 'checkpoint': ...}), which title
    results.html with the workdir's name and the date (run_identity)."""
    os.makedirs(workdir, exist_ok=True)
    prov = provenance()
    exts = ("json", "csv", "md", "html")
    paths = {ext: os.path.join(workdir, f"results.{ext}") for ext in exts}
    clean = {key: (None if math.isnan(v) else float(v)) for key, v in results.items()}
    with open(paths["json"], "w") as f:
        json.dump({**clean, "provenance": prov}, f, indent=2)
    cols = [(knn, p, m) for knn, p in columns(results, knn_names) for m in metric_names(k)]
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["domain", *(f"{knn}:{p}:{m}" for knn, p, m in cols)])
        for d in [*domains, "average"]:
            row = [clean.get(f"{d}:{p}:{knn}:{m}") for knn, p, m in cols]
            writer.writerow([d, *("" if v is None else f"{v:.6g}" for v in row)])
    table = format_table(results, domains, knn_names, k)
    with open(paths["md"], "w", encoding="utf-8") as f:
        f.write(f"# {title(results, knn_names, k)}\n\n{table}\n\n{_MD_NOTE}\n")
    with open(paths["html"], "w", encoding="utf-8") as f:
        page = results_page.render(
            results,
            domains,
            columns(results, knn_names),
            k,
            run=run_identity(workdir, run),
            provenance=prov,
        )
        f.write(page)
    paths["original"] = descriptor_files.write_results_original(workdir, results)
    return paths


def write_outputs(
    workdir: str,
    results: Mapping[str, float],
    plan: knn_evaluate.EvalPlan,
    descriptors: Mapping[str, np.ndarray] | None = None,
    descriptor_path: str = "",
    run: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """W/results.* of `plan`'s setups (+ the descriptors, when given, at descriptor_path:
    '' = W/descriptors.npz; a .pkl/.json path gets the original JSON layout:
    knn/descriptors.descriptor_file); process 0 only, the other processes write nothing.
    run: the model and checkpoint evaluated (write_results).

    Returns write_results' paths (+ 'descriptors' when written); {} on other processes."""
    if jax.process_index() != 0:
        return {}
    paths = write_results(workdir, dict(results), plan.domains, plan.knn_names, plan.k, run)
    if descriptors is not None:
        paths["descriptors"] = descriptor_path or os.path.join(workdir, "descriptors.npz")
        knn_descriptors.save_descriptor_file(paths["descriptors"], descriptors)
        logging.info("Wrote %s", paths["descriptors"])
    return paths
