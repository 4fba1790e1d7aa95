"""benchmarks/knn_torch.py: the torch reference search, its id comparison and its job list."""

import numpy as np
import pytest

from benchmarks import knn, knn_torch
from universal_embedding.knn.search import exact_topk, search

torch = pytest.importorskip("torch")


def _unit(rng, n, d=8):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_torch_search_matches_exact_search_with_self_exclusion():
    rng = np.random.default_rng(0)
    index = _unit(rng, 300)
    queries = index[:40]
    own = np.arange(40)
    ours = search(queries, index, 5, self_ids=own, backend="numpy")
    ref = knn_torch.torch_search(queries, index, 5, own, "cpu")
    assert not (ref[1] == own[:, None]).any()  # own entry never returned
    np.testing.assert_array_equal(ref[1], ours[1])
    np.testing.assert_allclose(ref[0], ours[0], atol=1e-6)
    plain = exact_topk(queries, index, 5)
    assert (plain[1][:, 0] == own).all()  # without the mask each query finds itself first


def test_torch_search_chunks_queries(monkeypatch):
    rng = np.random.default_rng(1)
    index, queries = _unit(rng, 50), _unit(rng, 23)
    whole = knn_torch.torch_search(queries, index, 3, np.full(23, -1), "cpu")
    monkeypatch.setattr(knn_torch, "_SCORE_BUDGET", 50 * 4)  # 4 queries per block
    chunked = knn_torch.torch_search(queries, index, 3, np.full(23, -1), "cpu")
    np.testing.assert_array_equal(chunked[1], whole[1])
    np.testing.assert_array_equal(chunked[1], exact_topk(queries, index, 3)[1])


def test_compare_counts_identical_tied_and_mismatched_rows():
    index = np.array([[1, 0], [1, 0], [0.8, 0.6], [0, 1], [-1, 0]], np.float32)
    queries = np.array([[1, 0], [0, 1], [0.6, 0.8]], np.float32)
    ours = exact_topk(queries, index, 2)
    assert ours[1][0].tolist() == [0, 1]  # rows 0 and 1 tie for query 0
    tied = (ours[0].copy(), ours[1].copy())
    tied[1][0] = [1, 0]
    assert knn_torch.compare(queries, index, ours, tied) == {
        "rows": 3, "identical": 2, "tied": 1, "mismatched": 0, "max_score_diff": 0.0,
    }  # fmt: skip
    wrong = (ours[0].copy(), ours[1].copy())
    wrong[1][2, 1] = 4  # right score claimed for a row whose true score is -0.6
    out = knn_torch.compare(queries, index, ours, wrong)
    assert (out["identical"], out["tied"], out["mismatched"]) == (2, 0, 1)
    worse = (ours[0].copy(), ours[1].copy())
    worse[0][1, 1], worse[1][1, 1] = -0.6, 4  # a genuinely lower neighbour at rank 2
    out = knn_torch.compare(queries, index, ours, worse)
    assert out["mismatched"] == 1 and out["max_score_diff"] == pytest.approx(0.6 + 0.6)


def test_search_jobs_are_descr_evals_searches():
    descr, _ = knn.synthesise(0.002, 8, seed=0)
    jobs = knn_torch.search_jobs(descr)
    assert [j[0] for j in jobs][-1] == "merged" and len(jobs) == 9
    name, q, x, own = jobs[-1]
    assert len(q) == sum(len(j[1]) for j in jobs[:-1])
    assert len(x) == sum(len(j[2]) for j in jobs[:-1])
    selfs = own >= 0
    assert selfs.sum() == sum((j[3] >= 0).sum() for j in jobs[:-1]) > 0
    np.testing.assert_array_equal(x[own[selfs]], q[selfs])  # own entry = the query itself
