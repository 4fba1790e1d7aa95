"""UnED retrieval metrics as vectorised numpy (docs/uned-benchmark.md §3).

Labels are sets: a retrieved image is relevant when it shares ANY label with the
query (same domain is the caller's job: pass domain-local index ids, -1 for
anything else). Label sets are held as `LabelSets` (flat values + offsets) so
single- and multi-label data take the same exact, loop-free path.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from universal_embedding.data.columns import LabelSets

_JOIN_BUDGET = 1 << 25  # (query, index image) candidate pairs held at once when counting


Labels = LabelSets | np.ndarray | Sequence[int | Sequence[int]]


def as_label_sets(labels: Labels) -> LabelSets:
    """LabelSets from a 1-D int array, a sequence of ints or of label tuples (info-file labels)."""
    if isinstance(labels, LabelSets):
        return labels
    if isinstance(labels, np.ndarray) and labels.ndim == 1:
        values = labels.astype(np.int64)
        return LabelSets(values, np.arange(len(values) + 1, dtype=np.int64))
    sets = LabelSets.from_sets([(x,) if isinstance(x, (int, np.integer)) else x for x in labels])
    if sets.values.size and sets.values.min() < 0:
        raise ValueError(f"Labels must be >= 0, found {sets.values.min()}.")
    return sets


def _ragged_take(sets: LabelSets, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(position in `items`, label) for every label of every item, items in order."""
    lengths = sets.lengths[items]
    owner = np.repeat(np.arange(len(items), dtype=np.int64), lengths)
    start = np.repeat(sets.offsets[items] - (np.cumsum(lengths) - lengths), lengths)
    return owner, sets.values[start + np.arange(len(owner), dtype=np.int64)]


def _pair_keys(owner: np.ndarray, labels: np.ndarray, num_labels: int) -> np.ndarray:
    """Sorted unique int64 keys owner * num_labels + label."""
    return np.unique(owner * num_labels + labels)


def _contains(sorted_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """keys[i] in sorted_keys, vectorised."""
    if not len(sorted_keys):
        return np.zeros(len(keys), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[pos] == keys


def count_relevant(
    query_labels: Labels, index_labels: Labels, self_ids: np.ndarray | None = None
) -> np.ndarray:
    """n_q: index images sharing a label with each query, minus the query itself (self_ids >= 0).

    Each index image counts once however many of the query's labels it carries.
    """
    q, x = as_label_sets(query_labels), as_label_sets(index_labels)
    num_labels = int(max(q.values.max(initial=-1), x.values.max(initial=-1))) + 1
    q_owner, q_lab = _ragged_take(q, np.arange(len(q)))
    q_keys = _pair_keys(q_owner, q_lab, num_labels)  # unique (query, label), sorted by query
    q_owner, q_lab = q_keys // num_labels, q_keys % num_labels
    single = x.lengths == 1
    single_counts = np.bincount(x.values[x.offsets[:-1][single]], minlength=num_labels)
    counts = np.bincount(q_owner, weights=single_counts[q_lab], minlength=len(q)).astype(np.int64)
    multi = np.nonzero(x.lengths > 1)[0]
    if len(multi):
        counts += _count_multi(q_owner, q_lab, x, multi, num_labels, len(q))
    if self_ids is not None:
        counts -= (np.asarray(self_ids) >= 0) & (q.lengths > 0)
    return counts


def _count_multi(
    q_owner: np.ndarray,
    q_lab: np.ndarray,
    x: LabelSets,
    multi: np.ndarray,
    num_labels: int,
    num_queries: int,
) -> np.ndarray:
    """Per query: multi-label index images sharing >= 1 label (join on label, dedupe pairs)."""
    m_owner, m_lab = _ragged_take(x, multi)
    order = np.argsort(m_lab, kind="stable")
    m_img, m_lab = multi[m_owner[order]], m_lab[order]
    lo = np.searchsorted(m_lab, q_lab, "left")
    hits = np.searchsorted(m_lab, q_lab, "right") - lo
    counts = np.zeros(num_queries, dtype=np.int64)
    # join in slices of whole queries so the (query, image) pairs stay within budget
    first_pair = np.searchsorted(q_owner, np.arange(num_queries + 1))
    done_before = np.concatenate([[0], np.cumsum(hits)])[first_pair]
    a = 0
    while a < num_queries:
        b = np.searchsorted(done_before, done_before[a] + _JOIN_BUDGET, "right") - 1
        b = max(int(b), a + 1)
        sl = slice(first_pair[a], first_pair[b])
        n = hits[sl]
        owner = np.repeat(q_owner[sl], n)
        start = np.repeat(lo[sl] - (np.cumsum(n) - n), n)
        img = m_img[start + np.arange(len(owner), dtype=np.int64)]
        pairs = np.unique(owner * (len(x) + 1) + img)
        counts += np.bincount(pairs // (len(x) + 1), minlength=num_queries)
        a = b
    return counts


def relevance(neighbour_ids: np.ndarray, query_labels: Labels, index_labels: Labels) -> np.ndarray:
    """bool [Q, k]: neighbour j of query i shares a label with it (ids < 0 are never relevant)."""
    q, x = as_label_sets(query_labels), as_label_sets(index_labels)
    ids = np.asarray(neighbour_ids, dtype=np.int64)
    num_labels = int(max(q.values.max(initial=-1), x.values.max(initial=-1))) + 1
    q_keys = _pair_keys(*_ragged_take(q, np.arange(len(q))), num_labels)
    flat_query = np.repeat(np.arange(ids.shape[0], dtype=np.int64), ids.shape[1])
    flat_ids = ids.reshape(-1)
    valid = np.nonzero(flat_ids >= 0)[0]
    pair, lab = _ragged_take(x, flat_ids[valid])
    hit = _contains(q_keys, flat_query[valid][pair] * num_labels + lab)
    rel = np.zeros(ids.size, dtype=bool)
    rel[valid] = np.bincount(pair, weights=hit, minlength=len(valid)) > 0
    return rel.reshape(ids.shape)


def query_metrics(relevant: np.ndarray, n_relevant: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Per-query top_1, mp_k, map_k (float64 [Q]) and 'valid' (n_q > 0) from bool [Q, >=k]."""
    rel = np.asarray(relevant, dtype=bool)[:, :k]
    if rel.shape[1] < k:
        rel = np.pad(rel, ((0, 0), (0, k - rel.shape[1])))
    n_rel = np.asarray(n_relevant, dtype=np.int64)
    denom = np.minimum(k, n_rel)
    valid = denom > 0
    hits = np.cumsum(rel, axis=1)  # relevant among the first i+1
    first = np.take_along_axis(hits, np.maximum(denom - 1, 0)[:, None], 1)[:, 0]
    precision_at = hits / np.arange(1, k + 1)
    safe = np.maximum(denom, 1)
    return {
        "top_1": rel[:, 0].astype(np.float64),
        f"mp_{k}": np.where(valid, first / safe, 0.0),
        f"map_{k}": np.where(valid, (precision_at * rel).sum(1) / safe, 0.0),
        "valid": valid,
    }


def mean_metrics(per_query: dict[str, np.ndarray]) -> dict[str, float]:
    """Means over valid queries (NaN when none is valid) and 'skipped_queries'."""
    valid = per_query["valid"]
    out = {}
    for name, values in per_query.items():
        if name != "valid":
            out[name] = float(values[valid].mean()) if valid.any() else float("nan")
    out["skipped_queries"] = float((~valid).sum())
    return out


def domain_metrics(
    neighbour_ids: np.ndarray,
    query_labels: Labels,
    index_labels: Labels,
    k: int,
    self_ids: np.ndarray | None = None,
) -> dict[str, float]:
    """Mean metrics of one domain's queries; neighbour_ids are domain-local (-1: other domain)."""
    n_rel = count_relevant(query_labels, index_labels, self_ids)
    rel = relevance(neighbour_ids, query_labels, index_labels)
    return mean_metrics(query_metrics(rel, n_rel, k))
