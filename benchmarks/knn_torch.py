"""Reference for benchmarks/knn.py: the same exact searches in torch, compared with ours.

The searches are those of the descr_eval path (`knn/evaluate.py`): per domain against its
own index split (separate) and all queries against the merged index (common), each query's
own entry excluded where its query split is its index. Ours is `knn.search.search` (the
backend descr_eval resolves); the reference is float32 chunked matmuls (TF32 off) plus
`torch.topk`. Both are timed the same way: wall time from host arrays to host results.
Neighbour ids must agree up to ties: where ids differ, the scores at that rank must agree
within `tol` and every returned score must equal the recomputed (float64) inner product.
"""

from __future__ import annotations

import time

import numpy as np

from universal_embedding.data import registry
from universal_embedding.knn.search import search

_SCORE_BUDGET = 1 << 30  # elements of one [query chunk, index] score block (4 GB float32)


def search_jobs(
    descr: dict, knn: str = "test_knn"
) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """(name, queries, index, self_ids) of every search descr_eval runs for `knn`."""
    setups = {d.name: d.knn_setup(knn) for d in registry.DOMAINS}
    jobs, own, offset = [], [], 0
    for name, s in setups.items():
        q, x = descr[f"{name}/{s.query}"], descr[f"{name}/{s.index}"]
        self_ids = np.arange(len(q)) if s.self_search else np.full(len(q), -1)
        jobs.append((f"separate {name}", q, x, self_ids))
        own.append(np.where(self_ids >= 0, self_ids + offset, -1))
        offset += len(x)
    merged_x = np.concatenate([j[2] for j in jobs])
    merged_q = np.concatenate([j[1] for j in jobs])
    jobs.append(("merged", merged_q, merged_x, np.concatenate(own)))
    return jobs


def torch_search(queries, index, k: int, self_ids, device: str):
    """Exact top-k by inner product in torch, own entries masked: (scores, ids) numpy."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(index, np.float32)).to(device)
    own = torch.from_numpy(np.asarray(self_ids, np.int64)).to(device)
    k = min(k, len(index) - int(bool((np.asarray(self_ids) >= 0).any())))
    step = max(1, _SCORE_BUDGET // max(1, len(index)))
    out_s, out_i = [], []
    with torch.no_grad():
        for lo in range(0, len(queries), step):
            q = torch.from_numpy(np.ascontiguousarray(queries[lo : lo + step], np.float32))
            s = q.to(device) @ x.T
            mine = own[lo : lo + step]
            rows = torch.nonzero(mine >= 0).squeeze(1)
            s[rows, mine[rows]] = -torch.inf
            top = torch.topk(s, k, dim=1)
            out_s.append(top.values.cpu())
            out_i.append(top.indices.cpu())
    return torch.cat(out_s).numpy(), torch.cat(out_i).numpy().astype(np.int64)


def compare(queries, index, ours, ref, tol: float = 1e-5) -> dict:
    """Rows with identical ids, rows differing only among tied scores, unexplained rows."""
    (s_a, i_a), (s_b, i_b) = ours, ref
    k = min(i_a.shape[1], i_b.shape[1])
    s_a, i_a, s_b, i_b = s_a[:, :k], i_a[:, :k], s_b[:, :k], i_b[:, :k]
    same = (i_a == i_b).all(1)
    bad = np.zeros(len(same), bool)
    rows = np.nonzero(~same)[0]
    if len(rows):
        q = queries[rows].astype(np.float64)
        for s, i in ((s_a[rows], i_a[rows]), (s_b[rows], i_b[rows])):
            exact = np.einsum("qd,qkd->qk", q, index[np.maximum(i, 0)].astype(np.float64))
            bad[rows] |= ((np.abs(exact - s) > tol) | (i < 0)).any(1)
        bad[rows] |= (np.abs(s_a[rows] - s_b[rows]) > tol).any(1)
    finite = np.isfinite(s_a) & np.isfinite(s_b)
    return {
        "rows": int(len(same)),
        "identical": int(same.sum()),
        "tied": int((~same & ~bad).sum()),
        "mismatched": int(bad.sum()),
        "max_score_diff": float(np.abs(s_a - s_b)[finite].max(initial=0.0)),
    }


def torch_device(requested: str) -> tuple[str | None, str]:
    """('cuda'|'cpu', '') to run on, or (None, why the reference is skipped)."""
    try:
        import torch
    except ImportError as e:
        return None, f"torch does not import ({e})"
    if requested == "cpu":
        return "cpu", ""
    if not torch.cuda.is_available():
        return None, "torch sees no CUDA device (pass --torch_device=cpu to run it on the CPU)"
    torch.backends.cuda.matmul.allow_tf32 = False  # float32 products, as our search's
    return "cuda", ""


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def run_reference(descr: dict, k: int, backend: str, device: str) -> dict:
    """Time ours and torch on every descr_eval search; totals and the id comparison."""
    torch_search(descr[next(iter(descr))][:8], descr[next(iter(descr))], 1, np.full(8, -1), device)
    _sync(device)  # context, cuBLAS handle and kernels ready before the clock starts
    totals = {"ours": 0.0, "torch": 0.0}
    agree = {"rows": 0, "identical": 0, "tied": 0, "mismatched": 0, "max_score_diff": 0.0}
    for name, q, x, own in search_jobs(descr):
        t0 = time.perf_counter()
        ours = search(q, x, k, self_ids=own, backend=backend)
        t1 = time.perf_counter()
        ref = torch_search(q, x, k, own, device)
        _sync(device)
        t2 = time.perf_counter()
        totals["ours"] += t1 - t0
        totals["torch"] += t2 - t1
        c = compare(q, x, ours, ref)
        for key in ("rows", "identical", "tied", "mismatched"):
            agree[key] += c[key]
        agree["max_score_diff"] = max(agree["max_score_diff"], c["max_score_diff"])
        if name == "merged":
            totals["ours_merged"], totals["torch_merged"] = t1 - t0, t2 - t1
    return {"device": device, "seconds": totals, "agreement": agree}
