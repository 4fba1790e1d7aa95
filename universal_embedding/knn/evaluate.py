"""kNN evaluation: separate and merged (common) protocols (docs/uned-benchmark.md §2, §3, §7).

Shared by the trainer's validation, `knn_main` and `descr_eval`. Separate: one
search per domain against its own index split. Merged: all evaluated domains'
queries in one search against the concatenation of their index splits (one big
call keeps the CPU search in its efficient blocked path), each query's own row
excluded by its global position; relevance still requires the query's domain.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence

import numpy as np
from absl import logging

from universal_embedding.data import info_files, registry
from universal_embedding.knn import metrics
from universal_embedding.knn.descriptors import validate_inputs
from universal_embedding.knn.search import resolve_backend, search

PROTOCOLS = {"separate": "separate", "merged": "common"}  # our name -> results-key name


@dataclasses.dataclass(frozen=True)
class EvalPlan:
    """What to evaluate; field names match `evaluate`'s keywords: evaluate(d, l, **asdict(plan))."""

    domains: tuple[str, ...]
    separate_knns: tuple[str, ...]
    merged_knns: tuple[str, ...]
    k: int = 5
    backend: str = "auto"

    @property
    def knn_names(self) -> tuple[str, ...]:
        """kNN setups any protocol needs, in registry order."""
        return tuple(n for n in registry.KNN_NAMES if n in self.separate_knns + self.merged_knns)


@dataclasses.dataclass
class Neighbours:
    """One domain's ranked neighbours under one protocol (ids index the protocol's index)."""

    query_key: str  # 'domain/split'
    index_keys: tuple[str, ...]  # parts of the index, in order
    index_offsets: np.ndarray  # [len(index_keys) + 1] start row of each part
    ids: np.ndarray  # [Q, k] int64, -1 = none
    scores: np.ndarray  # [Q, k] float32
    relevant: np.ndarray  # [Q, k] bool
    n_relevant: np.ndarray  # [Q] int64

    def locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(part number, row within that part) of index ids (ids must be >= 0)."""
        part = np.searchsorted(self.index_offsets, ids, side="right") - 1
        return part, ids - self.index_offsets[part]


@dataclasses.dataclass
class KnnOutput:
    """Flat results, optional neighbours keyed (knn, 'separate'|'merged', domain), timings (s)."""

    results: dict[str, float]
    neighbours: dict[tuple[str, str, str], Neighbours]
    timings: dict[str, float]


def required_splits(domains: Sequence[str], knn_names: Sequence[str]) -> list[str]:
    """'domain/split' keys the kNN setups need (queries and index), each once, in order."""
    keys: list[str] = []
    for knn in registry.parse_knn_names(knn_names):
        for d in registry.parse_domains(domains):
            setup = d.knn_setup(knn)
            for split in (setup.query, setup.index):
                if f"{d.name}/{split}" not in keys:
                    keys.append(f"{d.name}/{split}")
    return keys


def evaluate(
    descriptors: Mapping[str, np.ndarray],
    labels: Mapping[str, Sequence[tuple[int, ...]]],
    **plan,
) -> dict[str, float]:
    """Flat docs/uned-benchmark.md §7 results ('cars:separate:test_knn:top_1', ...), fractions.

    `plan` are run_evaluation's keywords (domains, separate_knns, merged_knns, k, backend).
    """
    return run_evaluation(descriptors, labels, **plan).results


def evaluate_with_info_files(
    descriptors: Mapping[str, np.ndarray], plan: EvalPlan, info_files_dir: str
) -> KnnOutput:
    """run_evaluation of `plan` with the labels of the info files in info_files_dir: what
    evaluating saved descriptors needs (descr_eval), nothing but arrays and info files."""
    keys = required_splits(plan.domains, plan.knn_names)
    infos = info_files.load_splits(info_files_dir, keys)
    labels = {key: info.labels for key, info in infos.items()}
    return run_evaluation(descriptors, labels, **dataclasses.asdict(plan))


def run_evaluation(
    descriptors: Mapping[str, np.ndarray],
    labels: Mapping[str, Sequence[tuple[int, ...]]],
    *,
    domains: Sequence[str],
    separate_knns: Sequence[str],
    merged_knns: Sequence[str],
    k: int = 5,
    backend: str = "auto",
    keep_neighbours: bool = False,
) -> KnnOutput:
    """`evaluate` plus neighbours (keep_neighbours=True) and search/metric timings."""
    t0 = time.perf_counter()
    domains = registry.parse_domain_names(domains)
    sep, mer = registry.parse_knn_names(separate_knns), registry.parse_knn_names(merged_knns)
    plan = EvalPlan(domains, sep, mer, k, resolve_backend(backend))
    keys = required_splits(domains, plan.knn_names)
    validate_inputs(descriptors, labels, domains, plan.knn_names)
    label_sets = {key: metrics.as_label_sets(labels[key]) for key in keys}
    out = KnnOutput({}, {}, {"validate": time.perf_counter() - t0, "search": 0.0, "metrics": 0.0})
    for knn in plan.knn_names:
        _evaluate_knn(descriptors, label_sets, plan, knn, keep_neighbours, out)
    ordered: dict[str, float] = {}  # knn, protocol, domain (then average), metric
    for knn in plan.knn_names:
        for proto in PROTOCOLS:
            if knn in (sep if proto == "separate" else mer):
                _add_average(out.results, domains, PROTOCOLS[proto], knn)
                for d in (*domains, "average"):
                    prefix = f"{d}:{PROTOCOLS[proto]}:{knn}:"
                    ordered.update((n, v) for n, v in out.results.items() if n.startswith(prefix))
    out.results = ordered
    return out


def _evaluate_knn(descriptors, label_sets, plan: EvalPlan, knn: str, keep: bool, out: KnnOutput):
    """Search (separate per domain, merged all at once), then score every domain."""
    setups = {d: registry.get_domain(d).knn_setup(knn) for d in plan.domains}
    q_keys = [f"{d}/{setups[d].query}" for d in plan.domains]
    x_keys = [f"{d}/{setups[d].index}" for d in plan.domains]
    q_sizes = np.array([len(descriptors[key]) for key in q_keys])
    x_offsets = np.concatenate([[0], np.cumsum([len(descriptors[key]) for key in x_keys])])
    own = [
        np.arange(n) if setups[d].self_search else None
        for d, n in zip(plan.domains, q_sizes, strict=True)
    ]
    t = time.perf_counter()
    found: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}
    if knn in plan.separate_knns:
        for pos, d in enumerate(plan.domains):
            found["separate", pos] = search(
                descriptors[q_keys[pos]], descriptors[x_keys[pos]], plan.k,
                self_ids=own[pos], backend=plan.backend, progress=f"{knn} separate {d}",
            )  # fmt: skip
    if knn in plan.merged_knns:
        self_ids = [x_offsets[p] + s if s is not None else -np.ones(n, np.int64)
                    for p, (s, n) in enumerate(zip(own, q_sizes, strict=True))]  # fmt: skip
        scores, ids = search(
            np.concatenate([descriptors[key] for key in q_keys]),
            np.concatenate([descriptors[key] for key in x_keys]),
            plan.k, self_ids=np.concatenate(self_ids), backend=plan.backend,
            progress=f"{knn} merged",
        )  # fmt: skip
        rows = np.concatenate([[0], np.cumsum(q_sizes)])
        for pos in range(len(plan.domains)):
            found["merged", pos] = scores[rows[pos] : rows[pos + 1]], ids[rows[pos] : rows[pos + 1]]
    out.timings["search"] += time.perf_counter() - t
    t = time.perf_counter()
    for pos, d in enumerate(plan.domains):
        q_labels, x_labels = label_sets[q_keys[pos]], label_sets[x_keys[pos]]
        n_rel = metrics.count_relevant(q_labels, x_labels, own[pos])
        for proto in PROTOCOLS:
            if (proto, pos) not in found:
                continue
            scores, ids = found[proto, pos]
            if proto == "separate":
                parts, offsets, local = (
                    (x_keys[pos],),
                    np.array([0, len(descriptors[x_keys[pos]])]),
                    ids,
                )
            else:
                parts, offsets = tuple(x_keys), x_offsets
                local = ids - x_offsets[pos]
                local = np.where((ids >= 0) & (local >= 0) & (local < len(x_labels)), local, -1)
            rel = metrics.relevance(local, q_labels, x_labels)
            values = metrics.mean_metrics(metrics.query_metrics(rel, n_rel, plan.k))
            for name, value in values.items():
                out.results[f"{d}:{PROTOCOLS[proto]}:{knn}:{name}"] = value
            if keep:
                out.neighbours[(knn, proto, d)] = Neighbours(
                    q_keys[pos], parts, offsets, ids, scores, rel, n_rel
                )
    out.timings["metrics"] += time.perf_counter() - t
    logging.info(
        "%s: search %.1fs, metrics %.1fs", knn, out.timings["search"], out.timings["metrics"]
    )


def _add_average(results: dict[str, float], domains: Sequence[str], proto: str, knn: str) -> None:
    """Unweighted mean over domains (NaN domains left out); skipped_queries is the total."""
    names = {
        key.rsplit(":", 1)[1] for key in results if key.startswith(f"{domains[0]}:{proto}:{knn}:")
    }
    for name in sorted(names, key=_metric_order):
        values = np.array([results[f"{d}:{proto}:{knn}:{name}"] for d in domains])
        if name == "skipped_queries":
            value = float(values.sum())
        else:
            finite = values[~np.isnan(values)]
            value = float(finite.mean()) if len(finite) else float("nan")
        results[f"average:{proto}:{knn}:{name}"] = value


def _metric_order(name: str) -> int:
    return ["top", "mp", "map", "skipped"].index(name.split("_")[0])
