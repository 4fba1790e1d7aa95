"""Saved-index build and query time at 1M x 64 (`python -m universal_embedding.index`'s code).

    .venv/bin/python benchmarks/index.py                    # 1M x 64, flat + ivf: minutes
    .venv/bin/python benchmarks/index.py --n 200000 --kinds flat,ivf,hnsw

Writes seeded random unit descriptors to an uncompressed .npz (as extract_dir_descriptors
does), then times `index.build_from_file` (memory-mapped, batched adds; ivf also trains and
measures recall@10 on 1000 sampled rows) and `SavedIndex.search` of 100 queries (k=10,
median of 5 runs), wall and CPU seconds (the CPU figure is steadier on shared cores), with the
process's peak RSS after each build.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time

import numpy as np

from universal_embedding import index as index_cli
from universal_embedding.knn import saved_index


def write_descriptors(path: str, n: int, d: int, seed: int = 0) -> None:
    """n x d float32 unit rows + short paths, written chunk by chunk into one .npz."""
    rng = np.random.default_rng(seed)
    vectors = np.lib.format.open_memmap(path + ".npy", "w+", np.float32, (n, d))
    for lo in range(0, n, 100_000):
        x = rng.standard_normal((min(100_000, n - lo), d), dtype=np.float32)
        vectors[lo : lo + len(x)] = x / np.linalg.norm(x, axis=1, keepdims=True)
    vectors.flush()
    paths = np.array([f"img/{i:07d}.jpg" for i in range(n)])
    np.savez(path, descriptors=vectors, paths=paths)
    del vectors
    os.remove(path + ".npy")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(n: int, d: int, kinds: list[str], queries: int = 100, k: int = 10) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        npz = os.path.join(tmp, "descriptors.npz")
        write_descriptors(npz, n, d)
        q = np.random.default_rng(1).standard_normal((queries, d)).astype(np.float32)
        q /= np.linalg.norm(q, axis=1, keepdims=True)
        for kind in kinds:
            out = os.path.join(tmp, kind)
            t0, c0 = time.perf_counter(), time.process_time()
            meta = index_cli.build_from_file(npz, out, kind=kind)
            build_s, build_cpu = time.perf_counter() - t0, time.process_time() - c0
            rss = peak_rss_mb()
            t0 = time.perf_counter()
            index = saved_index.SavedIndex(out)
            load_s = time.perf_counter() - t0
            times, cpu = [], []
            for _ in range(5):
                t0, c0 = time.perf_counter(), time.process_time()
                index.search(q, k)
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
            row = {
                "kind": kind,
                "n": n,
                "d": d,
                "build_s": round(build_s, 2),
                "build_cpu_s": round(build_cpu, 2),
                "load_s": round(load_s, 2),
                f"query_{queries}x_k{k}_median_s": round(float(np.median(times)), 4),
                f"query_{queries}x_k{k}_median_cpu_s": round(float(np.median(cpu)), 4),
                "peak_rss_mb": round(rss),
                **{key: v for key, v in meta.items() if key.startswith("recall") or key == "nlist"},
            }
            print(json.dumps(row), flush=True)
            rows.append(row)
            del index
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--kinds", default="flat,ivf")
    ap.add_argument("--out", default="", help="also write the rows as JSON here")
    args = ap.parse_args()
    rows = run(args.n, args.d, args.kinds.split(","))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
