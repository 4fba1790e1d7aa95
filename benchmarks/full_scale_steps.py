"""The stages of benchmarks/full_scale.py that are not a project command, one per process.

    .venv/bin/python benchmarks/full_scale_steps.py NAME WORKDIR SCALE

make_data: benchmarks/full_scale_data.py into WORKDIR/data. write_original: the final test's
descriptors.npz written again in the original's JSON layout (the project's writer, as the final
test with descriptor_format=original does). faiss_bare: faiss's exact search of the test
protocol's searches (each domain against its index, then every query against all indexes at
once), nothing else, for the kNN budget. index_descriptors: every test index row of
descriptors.npz in one file with its paths (what `index build` indexes) and a folder of 1,000
query images.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.dirname(HERE)]

import full_scale_data  # noqa: E402

from universal_embedding.data import info_files, registry  # noqa: E402

K = 5  # top_k of the test protocol


def make_data(w: str, scale: float) -> None:
    full_scale_data.make(os.path.join(w, "data"), scale)


def write_original(w: str, scale: float) -> None:
    from universal_embedding.original import descriptor_files

    arrays = np.load(os.path.join(w, "train", "descriptors.npz"), mmap_mode="r")
    path = os.path.join(w, "train", "descriptors_original.pkl")
    descriptor_files.save_original(path, {k: arrays[k] for k in arrays.files})


def _test_keys() -> list[tuple[str, str, bool]]:
    """(query key, index key, self search) of every domain's test_knn."""
    out = []
    for d in registry.DOMAINS:
        setup = d.knn_setup("test_knn")
        out.append((f"{d.name}/{setup.query}", f"{d.name}/{setup.index}", setup.self_search))
    return out


def faiss_bare(w: str, scale: float, separate_only: bool = False) -> None:
    import faiss

    arrays = np.load(os.path.join(w, "train", "descriptors.npz"))
    keys = _test_keys()
    data = {k: np.ascontiguousarray(arrays[k], np.float32) for q, x, _ in keys for k in (q, x)}
    timings = {}
    t = time.perf_counter()
    for q, x, own in keys:
        t0 = time.perf_counter()
        faiss.knn(data[q], data[x], K + 1 + own, metric=faiss.METRIC_INNER_PRODUCT)
        timings[q.split("/")[0]] = time.perf_counter() - t0
    timings["separate"] = time.perf_counter() - t
    if separate_only:
        _write(w, timings)
        return
    t = time.perf_counter()
    queries = np.concatenate([data[q] for q, _, _ in keys])
    index = np.concatenate([data[x] for _, x, _ in keys])
    faiss.knn(queries, index, K + 2, metric=faiss.METRIC_INNER_PRODUCT)
    timings["merged"] = time.perf_counter() - t
    _write(w, timings)


def _write(w: str, timings: dict) -> None:
    with open(os.path.join(w, "faiss_bare.json"), "w") as f:
        json.dump(timings, f, indent=1)


def index_descriptors(w: str, scale: float) -> None:
    arrays = np.load(os.path.join(w, "train", "descriptors.npz"), mmap_mode="r")
    keys = [x for _, x, _ in _test_keys()]
    vectors = np.concatenate([arrays[k] for k in keys])
    paths = []
    for key in keys:
        paths += info_files.load_split(os.path.join(w, "data", "info_files"), *key.split("/")).paths
    folder = os.path.join(w, "index")
    os.makedirs(os.path.join(folder, "queries"), exist_ok=True)
    np.savez(os.path.join(folder, "descriptors.npz"), descriptors=vectors, paths=np.array(paths))
    images = os.path.join(w, "data", "images")
    for i, rel in enumerate(paths[:: max(1, len(paths) // 1000)][:1000]):
        target = os.path.join(folder, "queries", f"{i:04d}.jpg")
        if not os.path.exists(target):
            os.link(os.path.join(images, rel), target)


if __name__ == "__main__":
    globals()[sys.argv[1]](sys.argv[2], float(sys.argv[3]), *(True for _ in sys.argv[4:]))
