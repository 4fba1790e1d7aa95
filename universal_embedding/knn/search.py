"""Exact top-k inner-product search, bounded memory, deterministic ties (docs/uned-benchmark.md §3).

`search` returns the k best index rows per query by inner product (cosine on
L2-normalised descriptors), ties broken by index position, optionally never
returning each query's own entry. Backends: 'faiss' (faiss-cpu exact search,
CPU), 'jax' (chunked matmul + `lax.top_k`, for GPU/TPU), 'numpy' (reference),
'auto' (jax when a GPU/TPU is present, else faiss).

Whatever the backend returns is put in canonical order (score descending, then
index position ascending). The backend is asked for _TIE_WIDEN candidates beyond the k
needed, so a tie group at the k-th place that ends within them is settled by that order alone;
rows whose group reaches past them are recomputed exactly. So results never depend on how a
backend orders equal scores. (faiss 1.15 keeps the earliest rows of a tie group
but returns them latest first; `lax.top_k` returns lower positions first.)
Memory: the index, a [16384, k+1+_TIE_WIDEN] result chunk and the backend's score block
(faiss: 4096 x 16384 floats; jax: query chunk x index chunk).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import numpy as np
from tqdm import tqdm

BACKENDS = ("auto", "faiss", "jax", "numpy")
_QUERY_CHUNK = 16384  # queries per backend call: bounds result buffers, paces the progress bar
_EXACT_BUDGET = 1 << 24  # score-matrix elements per step of the exact (numpy) path
# Candidates beyond the k needed. The extra ones cost faiss nothing measurable (its heaps),
# and settle ties without a second pass: with k + 1 on near-duplicate data, every tied row
# was searched again.
_TIE_WIDEN = 64
# faiss: take its blocked BLAS path from 20 queries on (below its default threshold,
# 128k, it scans the whole index once per query: memory-bound, ~2x slower), and use
# large blocks (a 256 MB score block): fewer BLAS/OpenMP hand-overs, ~2x less CPU on
# 2 cores than faiss's default 4096 x 1024 blocks (measured while writing benchmarks/knn.py).
_FAISS_BLAS = {"threshold": 20, "query_bs": 4096, "database_bs": 16384}

ScoresIds = tuple[np.ndarray, np.ndarray]


def resolve_backend(backend: str) -> str:
    """'auto' -> 'jax' when JAX sees a GPU/TPU, else 'faiss' (or 'numpy' without faiss)."""
    if backend not in BACKENDS:
        raise ValueError(f"Unknown kNN search backend '{backend}'. Valid: {', '.join(BACKENDS)}.")
    if backend != "auto":
        return backend
    import jax

    if jax.default_backend() in ("gpu", "cuda", "rocm", "tpu"):
        return "jax"
    try:
        import faiss  # noqa: F401
    except ImportError:
        return "numpy"
    return "faiss"


def search(
    queries: np.ndarray,
    index: np.ndarray,
    k: int,
    *,
    self_ids: np.ndarray | None = None,
    backend: str = "auto",
    progress: str | None = None,
) -> ScoresIds:
    """Top-k index rows per query by inner product: (scores [Q,k] float32, ids [Q,k] int64).

    Ties are broken by index position. `self_ids[i]` is the position of query i's
    own entry in `index` (-1: none); it is never returned. Rows with fewer than k
    other index entries are padded with id -1 and score -inf. `progress`: label of
    a tqdm bar over the queries (None: no bar).
    """
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    index = np.ascontiguousarray(index, dtype=np.float32)
    if queries.ndim != 2 or index.ndim != 2 or queries.shape[1] != index.shape[1]:
        raise ValueError(
            f"search needs 2-D queries and index of equal width, got {queries.shape} "
            f"and {index.shape}."
        )
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    num_q, num_x = len(queries), len(index)
    if self_ids is None:
        self_ids = np.full(num_q, -1, dtype=np.int64)
    self_ids = np.asarray(self_ids, dtype=np.int64)
    if self_ids.shape != (num_q,):
        raise ValueError(f"self_ids must have shape ({num_q},), got {self_ids.shape}.")
    kk = min(k + int(bool((self_ids >= 0).any())), num_x)  # candidates incl. a possible self
    m = min(kk + _TIE_WIDEN, num_x)  # more, to see whether a tie group runs past kk
    scores = np.full((num_q, k), -np.inf, dtype=np.float32)
    ids = np.full((num_q, k), -1, dtype=np.int64)
    if num_q == 0 or kk == 0:
        return scores, ids
    backend = resolve_backend(backend)
    topk = _backend_fn(backend, index, m)
    bar = tqdm(total=num_q, desc=progress, unit="query", leave=False, disable=progress is None)
    for lo in range(0, num_q, _QUERY_CHUNK):
        hi = min(lo + _QUERY_CHUNK, num_q)
        s, i = _canonical(*topk(queries[lo:hi]))
        if m < num_x:  # a tie group reaching the candidates' end: redo those rows exactly
            redo = np.nonzero(s[:, kk - 1] == s[:, m - 1])[0]
            if len(redo):
                s[redo, :kk], i[redo, :kk] = exact_topk(queries[lo:hi][redo], index, kk)
        s, i = _drop_self(s[:, :kk], i[:, :kk], self_ids[lo:hi], k)
        scores[lo:hi, : s.shape[1]], ids[lo:hi, : i.shape[1]] = s, i
        bar.update(hi - lo)
    bar.close()
    return scores, ids


def _canonical(scores: np.ndarray, ids: np.ndarray) -> ScoresIds:
    """Sort each row by (score descending, id ascending)."""
    order = np.lexsort((ids, -scores), axis=-1)
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


def _drop_self(scores: np.ndarray, ids: np.ndarray, self_ids: np.ndarray, k: int) -> ScoresIds:
    """Remove each row's own id (keeping order) and keep at most k columns."""
    is_self = ids == self_ids[:, None]
    order = np.argsort(is_self, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(scores, order, 1)
    ids = np.take_along_axis(ids, order, 1)
    gone = np.take_along_axis(is_self, order, 1)  # only when fewer than k others exist
    scores[gone], ids[gone] = -np.inf, -1
    return scores, ids


def exact_topk(queries: np.ndarray, index: np.ndarray, m: int) -> ScoresIds:
    """Reference exact top-m by (score desc, position asc), O(n) per query, chunked."""
    out_s = np.empty((len(queries), m), dtype=np.float32)
    out_i = np.empty((len(queries), m), dtype=np.int64)
    step = max(1, _EXACT_BUDGET // max(1, len(index)))
    for lo in range(0, len(queries), step):
        s = queries[lo : lo + step] @ index.T
        kth = np.partition(s, len(index) - m, axis=1)[:, len(index) - m]  # m-th largest
        above = s > kth[:, None]
        tied = s == kth[:, None]
        need = m - above.sum(1)  # how many of the tied, earliest positions first
        keep = above | (tied & (np.cumsum(tied, axis=1) <= need[:, None]))
        rows, cols = np.nonzero(keep)  # row-major: exactly m per row, positions ascending
        cols = cols.reshape(-1, m)
        out_s[lo : lo + step], out_i[lo : lo + step] = _canonical(
            np.take_along_axis(s, cols, 1), cols.astype(np.int64)
        )
    return out_s, out_i


def _backend_fn(backend: str, index: np.ndarray, m: int) -> Callable[[np.ndarray], ScoresIds]:
    """A function queries -> raw top-m (scores, ids), any tie order."""
    if backend == "faiss":
        return functools.partial(_faiss_topk, index=index, m=m)
    if backend == "jax":
        return _JaxSearcher(index, m)
    return lambda q: exact_topk(q, index, m)


@contextlib.contextmanager
def _faiss_blas_settings() -> Iterator[None]:
    import faiss

    names = {k: f"distance_compute_blas_{k}" for k in _FAISS_BLAS}
    old = {k: getattr(faiss.cvar, n) for k, n in names.items()}
    try:
        for k, n in names.items():
            setattr(faiss.cvar, n, _FAISS_BLAS[k])
        yield
    finally:
        for k, n in names.items():
            setattr(faiss.cvar, n, old[k])


def _faiss_topk(queries: np.ndarray, *, index: np.ndarray, m: int) -> ScoresIds:
    import faiss

    with _faiss_blas_settings():
        scores, ids = faiss.knn(queries, index, m, metric=faiss.METRIC_INNER_PRODUCT)
    return scores, ids.astype(np.int64, copy=False)


class _JaxSearcher:
    """Chunked exact top-m on the default JAX device; one compiled step for all chunks."""

    def __init__(self, index: np.ndarray, m: int, query_chunk: int = 0, index_chunk: int = 0):
        import jax

        on_accel = jax.default_backend() != "cpu"
        self.qc = query_chunk or (4096 if on_accel else 512)
        pow2 = 1 << max(0, int(len(index) - 1).bit_length())
        self.ic = index_chunk or min(65536 if on_accel else 8192, max(pow2, m))
        n_chunks = -(-len(index) // self.ic)
        padded = np.zeros((n_chunks * self.ic, index.shape[1]), np.float32)
        padded[: len(index)] = index
        self.chunks = [
            jax.device_put(padded[i * self.ic : (i + 1) * self.ic]) for i in range(n_chunks)
        ]
        self.n, self.m = len(index), m

    def __call__(self, queries: np.ndarray) -> ScoresIds:
        import jax.numpy as jnp

        out_s, out_i = [], []
        for lo in range(0, len(queries), self.qc):
            q = np.zeros((self.qc, queries.shape[1]), np.float32)
            q[: len(queries[lo : lo + self.qc])] = queries[lo : lo + self.qc]
            q = jnp.asarray(q)
            best_s = jnp.full((self.qc, self.m), -jnp.inf, jnp.float32)
            best_i = jnp.full((self.qc, self.m), -1, jnp.int32)
            for c, chunk in enumerate(self.chunks):
                best_s, best_i = _jax_step(q, chunk, best_s, best_i, c * self.ic, self.n)
            rows = min(self.qc, len(queries) - lo)
            out_s.append(np.asarray(best_s)[:rows])
            out_i.append(np.asarray(best_i)[:rows].astype(np.int64))
        return np.concatenate(out_s), np.concatenate(out_i)


@functools.cache
def _jax_step_fn() -> Callable:
    import jax
    import jax.numpy as jnp

    @jax.jit
    def step(q, chunk, best_s, best_i, base, n):
        """Merge one index chunk into the running top-m (running entries have lower ids)."""
        m = best_s.shape[1]
        s = jnp.dot(q, chunk.T, precision=jax.lax.Precision.HIGHEST)
        pos = base + jnp.arange(chunk.shape[0], dtype=jnp.int32)
        s = jnp.where(pos[None, :] < n, s, -jnp.inf)
        cs, ci = jax.lax.top_k(s, m)  # lower position first among equals
        all_s = jnp.concatenate([best_s, cs], axis=1)
        all_i = jnp.concatenate([best_i, ci + base], axis=1)
        top_s, where = jax.lax.top_k(all_s, m)
        return top_s, jnp.take_along_axis(all_i, where, axis=1)

    return step


def _jax_step(q, chunk, best_s, best_i, base: int, n: int):
    return _jax_step_fn()(q, chunk, best_s, best_i, np.int32(base), np.int32(n))
