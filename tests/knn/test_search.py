"""Exact top-k search: ties by index position, self exclusion, every backend agrees."""

import numpy as np
import pytest

from universal_embedding.knn import search as knn_search

BACKENDS = ["faiss", "jax", "numpy"]


def _reference(queries, index, k, self_ids=None):
    """Per-query full sort by (score desc, position asc), self removed."""
    ids, scores = [], []
    for i, q in enumerate(queries):
        s = index @ q
        order = [
            j
            for j in np.lexsort((np.arange(len(index)), -s))
            if self_ids is None or j != self_ids[i]
        ]
        order = order[:k] + [-1] * (k - len(order[:k]))
        ids.append(order)
        scores.append([s[j] if j >= 0 else -np.inf for j in order])
    return np.array(scores, np.float32), np.array(ids, np.int64)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_broken_by_index_position(backend):
    index = np.array([[0, 1], [1, 0], [1, 0], [0, 1], [1, 0], [1, 0], [1, 0]], np.float32)
    scores, ids = knn_search.search(np.array([[1, 0]], np.float32), index, 3, backend=backend)
    assert ids.tolist() == [[1, 2, 4]]  # five rows tie at 1.0: the earliest three, in order
    assert scores.tolist() == [[1, 1, 1]]
    assert ids.dtype == np.int64 and scores.dtype == np.float32


@pytest.mark.parametrize("backend", BACKENDS)
def test_self_excluded_by_position_even_among_duplicates(backend):
    index = np.array([[1, 0], [1, 0], [1, 0], [0.6, 0.8]], np.float32)
    queries = index[:3]
    _, ids = knn_search.search(queries, index, 2, self_ids=np.array([0, 1, 2]), backend=backend)
    assert ids.tolist() == [[1, 2], [0, 2], [0, 1]]
    # -1: no self in the index, nothing removed
    _, ids = knn_search.search(queries, index, 2, self_ids=np.array([-1, 1, -1]), backend=backend)
    assert ids.tolist() == [[0, 1], [0, 2], [0, 1]]


@pytest.mark.parametrize("backend", BACKENDS)
def test_index_smaller_than_k_is_padded(backend):
    index = np.array([[1, 0], [0, 1]], np.float32)
    scores, ids = knn_search.search(index, index, 3, self_ids=np.array([0, -1]), backend=backend)
    assert ids.tolist() == [[1, -1, -1], [1, 0, -1]]
    assert scores[0].tolist() == [0, -np.inf, -np.inf]


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_reference_on_tie_heavy_integer_data(backend):
    rng = np.random.default_rng(0)
    index = rng.integers(-1, 2, (700, 3)).astype(np.float32)  # 27 distinct vectors: ties everywhere
    queries = np.concatenate([index[:150], rng.integers(-2, 3, (50, 3)).astype(np.float32)])
    self_ids = np.concatenate([np.arange(150), -np.ones(50, int)])
    got = knn_search.search(queries, index, 5, self_ids=self_ids, backend=backend)
    want = _reference(queries, index, 5, self_ids)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_matches_reference_on_random_unit_vectors(backend, monkeypatch):
    monkeypatch.setattr(knn_search, "_QUERY_CHUNK", 64)  # several query chunks
    rng = np.random.default_rng(1)
    index = rng.standard_normal((500, 16)).astype(np.float32)
    index /= np.linalg.norm(index, axis=1, keepdims=True)
    queries = index[rng.permutation(500)[:200]]
    got = knn_search.search(queries, index, 5, backend=backend)
    want = _reference(queries, index, 5)
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_allclose(got[0], want[0], atol=1e-6)


def test_jax_backend_with_several_index_chunks():
    rng = np.random.default_rng(2)
    index = rng.integers(-1, 2, (300, 4)).astype(np.float32)
    searcher = knn_search._JaxSearcher(index, 6, query_chunk=16, index_chunk=64)
    scores, ids = knn_search._canonical(*searcher(index[:40]))
    want_s, want_i = _reference(index[:40], index, 6)
    np.testing.assert_array_equal(scores, want_s)
    # equal scores may come in any order from a backend, but the set is the earliest positions
    np.testing.assert_array_equal(ids, want_i)


def _latest_first(index, m):
    """A backend returning the LATEST rows of a tie group first (as no real one does)."""

    def fn(q):
        s = q @ index.T
        later = np.broadcast_to(-np.arange(len(index)), s.shape)
        order = np.lexsort((later, -s), axis=-1)[:, :m]
        return np.take_along_axis(s, order, 1).astype(np.float32), order.astype(np.int64)

    return fn


def test_exact_fallback_when_backend_cuts_a_tie_group(monkeypatch):
    """A backend that returns the LATEST tied rows is corrected by the boundary check."""

    monkeypatch.setattr(knn_search, "_backend_fn", lambda _, index, m: _latest_first(index, m))
    monkeypatch.setattr(knn_search, "_TIE_WIDEN", 2)  # 5 of the 7 rows are candidates
    index = np.array([[2, 0]] + [[1, 0]] * 6, np.float32)
    _, ids = knn_search.search(np.array([[1, 0]], np.float32), index, 3, backend="numpy")
    assert ids.tolist() == [[0, 1, 2]]


@pytest.mark.parametrize("ties, exact_calls", [(5, 0), (12, 1)])
def test_extra_candidates_settle_ties_without_the_exact_path(monkeypatch, ties, exact_calls):
    """The k + _TIE_WIDEN candidates settle a tie group at the k-th place that ends within
    them without exact_topk, in one backend call (no second search of the tied rows); a longer
    group goes to exact_topk."""

    calls, searches = [], []
    exact = knn_search.exact_topk

    def backend(_, index, m):
        fn = _latest_first(index, m)
        return lambda q: searches.append(m) or fn(q)

    monkeypatch.setattr(knn_search, "_backend_fn", backend)
    monkeypatch.setattr(knn_search, "_TIE_WIDEN", 4)
    monkeypatch.setattr(knn_search, "exact_topk", lambda *a: calls.append(1) or exact(*a))
    index = np.array([[2, 0]] + [[1, 0]] * ties + [[0, 1]] * 10, np.float32)
    _, ids = knn_search.search(np.array([[1, 0]], np.float32), index, 3, backend="numpy")
    assert ids.tolist() == [[0, 1, 2]] and len(calls) == exact_calls
    assert searches == [3 + 4]


def test_bad_arguments():
    x = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="backend"):
        knn_search.search(x, x, 1, backend="annoy")
    with pytest.raises(ValueError, match="equal width"):
        knn_search.search(x, np.zeros((3, 4), np.float32), 1)
    with pytest.raises(ValueError, match="k must"):
        knn_search.search(x, x, 0)
    assert knn_search.resolve_backend("auto") == "faiss"  # tests run on CPU
