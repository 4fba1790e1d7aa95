"""UnED metrics (docs/uned-benchmark.md §3): hand-computed cases and a per-query reference."""

import numpy as np
import pytest

from universal_embedding.knn import metrics


def test_single_label_hand_computed():
    index = [0, 1, 0, 2, 0, 1]
    queries = [(0,), (1,), (7,)]
    ids = np.array([[1, 0, 2, 5, 4], [5, 3, 1, 0, 2], [0, 1, 2, 3, 4]])
    n_rel = metrics.count_relevant(queries, index)
    assert n_rel.tolist() == [3, 2, 0]
    rel = metrics.relevance(ids, queries, index)
    assert rel.astype(int).tolist() == [[0, 1, 1, 0, 1], [1, 0, 1, 0, 0], [0, 0, 0, 0, 0]]
    per_q = metrics.query_metrics(rel, n_rel, 5)
    # query 0: n=3, first 3 hold 2 relevant; AP = (1/2 + 2/3 + 3/5) / 3
    # query 1: n=2, first 2 hold 1 relevant; AP = (1/1 + 2/3) / 2
    np.testing.assert_allclose(per_q["top_1"][:2], [0, 1])
    np.testing.assert_allclose(per_q["mp_5"][:2], [2 / 3, 1 / 2])
    np.testing.assert_allclose(per_q["map_5"][:2], [(1 / 2 + 2 / 3 + 3 / 5) / 3, (1 + 2 / 3) / 2])
    assert per_q["valid"].tolist() == [True, True, False]
    means = metrics.mean_metrics(per_q)
    assert means["skipped_queries"] == 1
    assert means["top_1"] == pytest.approx(0.5)
    assert means["mp_5"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert means["map_5"] == pytest.approx(((1 / 2 + 2 / 3 + 3 / 5) / 3 + (1 + 2 / 3) / 2) / 2)


def test_multi_label_counts_each_index_image_once():
    index = [(0,), (2,), (1,), (0, 2), (1, 2), (2, 0, 2)]
    queries = [(0, 2), (1,), (5, 6), (2, 2)]
    # (0,2): images 0, 1, 3, 4, 5 (3 and 5 carry both labels: counted once)
    assert metrics.count_relevant(queries, index).tolist() == [5, 2, 0, 4]
    # the query itself sits in the index at these positions: it does not count
    self_ids = np.array([3, 2, -1, -1])
    assert metrics.count_relevant(queries, index, self_ids).tolist() == [4, 1, 0, 4]
    ids = np.array([[2, 4, -1], [4, 3, 0], [0, 1, 2], [5, 0, 1]])
    rel = metrics.relevance(ids, queries, index)
    assert rel.astype(int).tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 0], [1, 0, 1]]


def test_multi_label_join_in_several_slices(monkeypatch):
    rng = np.random.default_rng(1)
    index = [tuple(rng.integers(0, 6, rng.integers(1, 4))) for _ in range(300)]
    queries = [tuple(rng.integers(0, 6, rng.integers(1, 3))) for _ in range(50)]
    expected = [sum(bool(set(q) & set(x)) for x in index) for q in queries]
    assert metrics.count_relevant(queries, index).tolist() == expected
    monkeypatch.setattr(metrics, "_JOIN_BUDGET", 7)  # forces one slice per few queries
    assert metrics.count_relevant(queries, index).tolist() == expected


def test_fewer_relevant_than_k_and_missing_neighbours():
    # n=1: mMP@5 looks at the first neighbour only; AP divides by 1
    per_q = metrics.query_metrics(np.array([[False, True, False, False, False]]), np.array([1]), 5)
    assert per_q["top_1"][0] == 0 and per_q["mp_5"][0] == 0
    assert per_q["map_5"][0] == pytest.approx(0.5)
    # an index smaller than k: ids -1 are never relevant
    rel = metrics.relevance(np.array([[1, -1, -1]]), [(3,)], [3, 3])
    assert rel.tolist() == [[True, False, False]]
    per_q = metrics.query_metrics(rel, np.array([2]), 3)
    assert per_q["mp_3"][0] == pytest.approx(0.5)
    assert per_q["map_3"][0] == pytest.approx(0.5)


def test_all_queries_skipped_gives_nan_not_crash():
    per_q = metrics.query_metrics(np.zeros((2, 5), bool), np.array([0, 0]), 5)
    means = metrics.mean_metrics(per_q)
    assert np.isnan(means["top_1"]) and means["skipped_queries"] == 2


def test_label_inputs_agree():
    as_arr = metrics.as_label_sets(np.array([3, 1, 3]))
    as_tuples = metrics.as_label_sets([(3,), (1,), (3,)])
    as_ints = metrics.as_label_sets([3, 1, 3])
    for other in (as_tuples, as_ints):
        np.testing.assert_array_equal(as_arr.values, other.values)
        np.testing.assert_array_equal(as_arr.offsets, other.offsets)
    with pytest.raises(ValueError, match=">= 0"):
        metrics.as_label_sets([(1,), (-2,)])


def _reference(ids, queries, index, n_rel, k):
    """Per-query loop straight from docs/uned-benchmark.md §3."""
    out = {"top_1": [], f"mp_{k}": [], f"map_{k}": []}
    for i, q in enumerate(queries):
        rel = [j >= 0 and bool(set(q) & set(index[j])) for j in ids[i]]
        d = min(k, n_rel[i])
        if d == 0:
            continue
        out["top_1"].append(float(rel[0]))
        out[f"mp_{k}"].append(sum(rel[:d]) / d)
        out[f"map_{k}"].append(sum(sum(rel[: r + 1]) / (r + 1) * rel[r] for r in range(k)) / d)
    return {name: np.mean(v) for name, v in out.items()}


def test_matches_per_query_reference_multi_label():
    rng = np.random.default_rng(0)
    index = [tuple(rng.integers(0, 20, rng.integers(1, 3))) for _ in range(200)]
    queries = [tuple(rng.integers(0, 25, rng.integers(1, 4))) for _ in range(120)]
    ids = rng.integers(-1, 200, (120, 5))
    n_rel = metrics.count_relevant(queries, index)
    assert n_rel.tolist() == [sum(bool(set(q) & set(x)) for x in index) for q in queries]
    got = metrics.mean_metrics(
        metrics.query_metrics(metrics.relevance(ids, queries, index), n_rel, 5)
    )
    want = _reference(ids, queries, index, n_rel, 5)
    for name, value in want.items():
        assert got[name] == pytest.approx(value)
    assert got["skipped_queries"] == int((n_rel == 0).sum())
