"""A faiss search index kept on disk with the image paths of its rows.

INDEX/index.faiss (inner product = cosine on unit descriptors), INDEX/paths.bin +
INDEX/paths_offsets.npy (UTF-8 paths, read row by row), INDEX/meta.json (kind, size, settings,
recall of approximate kinds). Rows are added in batches from memory-mapped descriptors, so
building needs the index's own memory and one batch, not a copy of the descriptors.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence

import numpy as np

from universal_embedding.errors import limits
from universal_embedding.knn import index_file
from universal_embedding.knn.search import search

KINDS = ("flat", "ivf", "hnsw")
INDEX_FILE, META_FILE = "index.faiss", "meta.json"
PATHS_FILE, OFFSETS_FILE = "paths.bin", "paths_offsets.npy"
ADD_BATCH = 65536
MAX_PATH_BYTES = 65536  # one row's path in paths.bin
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 80, 128
IVF_TRAIN_PER_LIST, IVF_NPROBE = 64, 16  # k-means sample per list (faiss: 39..256); lists probed


def _faiss():
    import faiss

    return faiss


def _batches(vectors: np.ndarray, size: int = ADD_BATCH) -> Iterable[np.ndarray]:
    for lo in range(0, len(vectors), size):
        yield np.ascontiguousarray(vectors[lo : lo + size], dtype=np.float32)


def ivf_lists(n: int) -> int:
    """Inverted lists for n vectors: about sqrt(n), each trained on >= 39 points."""
    return max(1, min(int(math.sqrt(n)), n // 39))


def new_index(kind: str, vectors: np.ndarray, seed: int = 0, nprobe: int = IVF_NPROBE):
    """An empty (trained, for ivf) faiss index of `kind` for vectors like these."""
    faiss = _faiss()
    n, d = vectors.shape
    if kind == "flat":
        return faiss.IndexFlatIP(d)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
        return index
    if kind == "ivf":
        nlist = ivf_lists(n)
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        rows = np.sort(
            np.random.default_rng(seed).permutation(n)[: min(n, IVF_TRAIN_PER_LIST * nlist)]
        )
        index.train(np.ascontiguousarray(vectors[rows], dtype=np.float32))
        index.nprobe = min(nlist, nprobe)
        return index
    raise ValueError(f"Unknown index kind '{kind}'. Valid kinds: {', '.join(KINDS)}.")


def exact_neighbour_ids(queries: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    """Exact top-k ids by inner product ([n, k], best first; ties: lower row first), streaming
    over `vectors` (possibly memory-mapped) in batches: knn/search.py's exact search of each
    batch (faiss, ties settled by its exact_topk), the running best kept. k <= len(vectors)."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    size = ADD_BATCH // 4
    best_s = np.empty((len(queries), 0), np.float32)
    best_i = np.empty((len(queries), 0), np.int64)
    for n, chunk in enumerate(_batches(vectors, size)):
        s, i = search(queries, chunk, min(k, len(chunk)), backend="faiss")
        s, i = np.concatenate([best_s, s], 1), np.concatenate([best_i, i + n * size], 1)
        order = np.lexsort((i, -s), axis=-1)[:, :k]  # score descending, then row ascending
        best_s, best_i = np.take_along_axis(s, order, 1), np.take_along_axis(i, order, 1)
    return best_i


def recall_at_k(index, vectors: np.ndarray, k: int, sample: int, seed: int = 0) -> float:
    """Mean |approximate top-k & exact top-k| / k over `sample` indexed vectors as queries."""
    n = len(vectors)
    k = min(k, n)
    rows = np.sort(np.random.default_rng(seed).permutation(n)[: min(n, sample)])
    queries = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    exact = exact_neighbour_ids(queries, vectors, k)
    _, approx = index.search(queries, k)
    hits = [len(set(a[a >= 0]) & set(e[e >= 0])) for a, e in zip(approx, exact, strict=True)]
    return float(np.mean(hits) / k)


def write_paths(out_dir: str, paths: Iterable[str]) -> int:
    """paths.bin (UTF-8, concatenated) + paths_offsets.npy (int64 [n + 1]); returns n."""
    offsets = [0]
    with open(os.path.join(out_dir, PATHS_FILE), "wb") as f:
        for p in paths:
            data = str(p).encode("utf-8")
            f.write(data)
            offsets.append(offsets[-1] + len(data))
    np.save(os.path.join(out_dir, OFFSETS_FILE), np.asarray(offsets, np.int64))
    return len(offsets) - 1


def build(
    vectors: np.ndarray,
    paths: Sequence[str],
    out_dir: str,
    *,
    kind: str = "flat",
    recall_k: int = 10,
    recall_sample: int = 1000,
    nprobe: int = IVF_NPROBE,
    extra_meta: dict | None = None,
) -> dict:
    """Build, fill and save an index of `vectors` (rows = `paths`); returns its meta dict."""
    if kind not in KINDS:
        raise ValueError(f"Unknown index kind '{kind}'. Valid kinds: {', '.join(KINDS)}.")
    if len(paths) != len(vectors):
        raise ValueError(f"{len(paths)} paths for {len(vectors)} descriptors.")
    index = new_index(kind, vectors, nprobe=nprobe)
    for chunk in _batches(vectors):
        index.add(chunk)
    os.makedirs(out_dir, exist_ok=True)
    meta = {"kind": kind, "count": int(index.ntotal), "dim": int(vectors.shape[1])}
    meta["metric"] = "inner_product"
    if kind == "ivf":
        meta.update(nlist=int(index.nlist), nprobe=int(index.nprobe))
    if kind == "hnsw":
        meta.update(M=HNSW_M, ef_search=HNSW_EF_SEARCH)
    if kind != "flat":
        meta[f"recall_at_{recall_k}"] = recall_at_k(index, vectors, recall_k, recall_sample)
        meta["recall_sample"] = min(recall_sample, len(vectors))
    meta.update(extra_meta or {})
    _faiss().write_index(index, os.path.join(out_dir, INDEX_FILE))
    write_paths(out_dir, paths)
    with open(os.path.join(out_dir, META_FILE), "w") as f:
        json.dump(meta, f, indent=2)
    return meta


def check_index_file(path: str, dim: int, count: int, kind: str = "flat") -> None:
    """Refuse an index.faiss that is not a regular file, whose header disagrees with meta.json
    (dimension, row count, kind) or whose declared sizes its own size cannot hold, before
    faiss allocates what it declares: knn/index_file.py walks the whole file."""
    size = os.path.getsize(limits.regular_file(path, "Index file"))
    with limits.open_regular(path, "Index file") as f:
        head = f.read(index_file.HEADER.size)
        if len(head) < index_file.HEADER.size:
            raise ValueError(f"{limits.short(path)} is too short ({size} bytes) for a faiss index.")
        _, d, ntotal, _, _, _, _ = index_file.HEADER.unpack(head)
        if (d, ntotal) != (dim, count):
            raise ValueError(
                f"{limits.short(path)} holds {ntotal} vectors of dimension {d}, but meta.json "
                f"says {count} of dimension {dim}: the index files do not belong together; "
                "rebuild it."
            )
        if d * ntotal * 4 > size:
            raise ValueError(
                f"{limits.short(path)}: {ntotal} x {d} floats do not fit its {size} bytes."
            )
        f.seek(0)
        index_file.check_layout(f, path, size, kind)


class SavedIndex:
    """An index folder opened for search; paths read on demand from paths.bin."""

    def __init__(self, index_dir: str):
        meta_path = os.path.join(index_dir, META_FILE)
        if not os.path.isfile(meta_path):
            raise FileNotFoundError(
                f"{meta_path} not found: build the index first "
                "(python -m universal_embedding.index build --descriptors=... --out=INDEX)."
            )
        self.meta = limits.read_json_object(meta_path, "Index meta")
        try:
            dim, count = int(self.meta["dim"]), int(self.meta["count"])
            if self.meta["kind"] not in KINDS:
                raise ValueError(f"kind {limits.short(self.meta['kind'])!r} is not one of {KINDS}")
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{meta_path}: no valid kind, dim and count ({e}).") from None
        self.dir = index_dir
        check_index_file(os.path.join(index_dir, INDEX_FILE), dim, count, self.meta["kind"])
        self.index = _faiss().read_index(os.path.join(index_dir, INDEX_FILE))
        if self.meta["kind"] == "ivf":
            self.index.nprobe = int(self.meta["nprobe"])
        if self.meta["kind"] == "hnsw":
            self.index.hnsw.efSearch = int(self.meta["ef_search"])
        offsets_path = limits.regular_file(os.path.join(index_dir, OFFSETS_FILE), "Index paths")
        self._offsets = np.load(offsets_path, mmap_mode="r", allow_pickle=False)
        limits.regular_file(os.path.join(index_dir, PATHS_FILE), "Index paths")
        if self._offsets.shape != (count + 1,) or self._offsets.dtype.kind not in "iu":
            raise ValueError(
                f"{offsets_path} holds {self._offsets.shape} {self._offsets.dtype} offsets for "
                f"{count} rows: the index files do not belong together; rebuild the index."
            )

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    def path(self, row: int) -> str:
        lo, hi = int(self._offsets[row]), int(self._offsets[row + 1])
        if not 0 <= lo <= hi <= lo + MAX_PATH_BYTES:
            raise ValueError(
                f"{os.path.join(self.dir, OFFSETS_FILE)}: row {row} spans bytes {lo}..{hi} (at "
                f"most {MAX_PATH_BYTES} per path); the index is damaged, rebuild it."
            )
        with open(os.path.join(self.dir, PATHS_FILE), "rb") as f:
            f.seek(lo)
            return f.read(hi - lo).decode("utf-8")

    def search(self, queries: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """Per query, [(path, score)] of its top-k rows, best first."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(
                f"Queries have dimension {queries.shape[-1]}, the index {self.dim}: embed them "
                "with the model that made the indexed descriptors."
            )
        scores, ids = self.index.search(queries, min(k, self.index.ntotal))
        return [
            [(self.path(int(i)), float(s)) for s, i in zip(srow, irow, strict=True) if i >= 0]
            for srow, irow in zip(scores, ids, strict=True)
        ]
