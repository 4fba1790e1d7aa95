"""kNN evaluation speed at growing UnED sizes vs faiss-cpu exact search alone (same run).

    .venv/bin/python benchmarks/knn.py             # scales 0.02, 0.05, 0.1: minutes on 2 cores
    .venv/bin/python benchmarks/knn.py --scales=0.1,0.3
    .venv/bin/python benchmarks/knn.py --full            # ... up to the real test_knn sizes

Synthetic 64-d unit descriptors and random labels with the registry's test_knn split
sizes times the scale (met queries partly unmatched, gldv2 queries multi-label). The
whole descr_eval path (read .npz and info files, validate, search, metrics, write
results) is timed in-process and compared with faiss IndexFlatIP (default settings)
running the same searches: per domain for separate, all queries vs the merged index
for common, k+1 where the query split is its own index.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import tempfile
import time

import numpy as np

from universal_embedding.configs import config_knn_descr_eval
from universal_embedding.data import registry
from universal_embedding.data.info_files import load_splits
from universal_embedding.knn import descriptors, evaluate, report

# mean images per class in the index split (roughly the real datasets')
CLASS_SIZE = {
    "cars": 83,
    "sop": 5,
    "inshop": 4,
    "inat": 30,
    "met": 2,
    "gldv2": 10,
    "food2k": 11,
    "rp2k": 10,
}


def synthesise(scale: float, dim: int, seed: int) -> tuple[dict, dict]:
    """Descriptors and label tuples for every test_knn split at `scale` x the real sizes."""
    rng = np.random.default_rng(seed)
    descr, labels = {}, {}
    for d in registry.DOMAINS:
        setup = d.knn_setup("test_knn")
        n_index = max(2, round(d.split_size(setup.index) * scale))
        n_cls = max(1, n_index // CLASS_SIZE[d.name])
        for split, n in (
            (setup.index, n_index),
            (setup.query, round(d.split_size(setup.query) * scale)),
        ):
            key = f"{d.name}/{split}"
            if key in descr:
                continue
            x = rng.standard_normal((max(2, n), dim), dtype=np.float32)
            descr[key] = x / np.linalg.norm(x, axis=1, keepdims=True)
            if split == setup.index:
                labels[key] = [(int(c),) for c in rng.integers(0, n_cls, len(x))]
            elif d.name == "gldv2":  # 1-3 landmarks per query, some absent from the index
                labels[key] = [
                    tuple(int(c) for c in rng.integers(0, int(1.2 * n_cls), rng.integers(1, 4)))
                    for _ in range(len(x))
                ]
            else:  # met: ~30% of queries have no class in the index
                hi = int(n_cls * (1.4 if d.name == "met" else 1))
                labels[key] = [(int(c),) for c in rng.integers(0, hi, len(x))]
    return descr, labels


def write_inputs(workdir: str, descr: dict, labels: dict) -> tuple[str, str]:
    """descriptors.npz and info_files/<domain>/<split>.json as descr_eval reads them."""
    info_dir = os.path.join(workdir, "info_files")
    for key, labs in labels.items():
        domain, split = key.split("/")
        os.makedirs(os.path.join(info_dir, domain), exist_ok=True)
        entries = [
            {"path": f"{i}.jpg", "class_id": list(c) if len(c) > 1 else c[0]}
            for i, c in enumerate(labs)
        ]
        with open(registry.info_file_path(info_dir, domain, split), "w") as f:
            json.dump(entries, f)
    path = os.path.join(workdir, "descriptors.npz")
    descriptors.save_npz(path, descr)
    return path, info_dir


def time_descr_eval(descr_path: str, info_dir: str, workdir: str, k: int, backend: str) -> dict:
    """The descr_eval library path, stage by stage (same calls as report.evaluate_and_report)."""
    c = config_knn_descr_eval.get_config()
    c.descr_path, c.info_files_dir, c.top_k, c.knn_search = descr_path, info_dir, k, backend
    t0, cpu0 = time.perf_counter(), time.process_time()
    plan = evaluate.plan_from_config(c)
    descr = descriptors.load_descriptors(descr_path)
    labels = {
        k: i.labels
        for k, i in load_splits(
            info_dir, evaluate.required_splits(plan.domains, plan.knn_names)
        ).items()
    }
    t_load = time.perf_counter() - t0
    out = evaluate.run_evaluation(descr, labels, **dataclasses.asdict(plan))
    t1 = time.perf_counter()
    report.write_results(workdir, out.results, plan.domains, plan.knn_names, plan.k)
    t_write = time.perf_counter() - t1
    total, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return dict(
        load=t_load, **out.timings, write=t_write, total=total, cpu=cpu, results=out.results
    )


def time_faiss_alone(descr: dict, k: int) -> dict:
    """faiss IndexFlatIP, default settings: separate per domain + all queries vs merged index."""
    import faiss

    setups = {d.name: d.knn_setup("test_knn") for d in registry.DOMAINS}
    t0, cpu0 = time.perf_counter(), time.process_time()
    for name, s in setups.items():
        index = faiss.IndexFlatIP(descr[f"{name}/{s.index}"].shape[1])
        index.add(descr[f"{name}/{s.index}"])
        index.search(descr[f"{name}/{s.query}"], k + int(s.self_search))
    t1 = time.perf_counter()
    index = faiss.IndexFlatIP(next(iter(descr.values())).shape[1])
    for name, s in setups.items():
        index.add(descr[f"{name}/{s.index}"])
    queries = np.concatenate([descr[f"{name}/{s.query}"] for name, s in setups.items()])
    index.search(queries, k + 1)
    t2 = time.perf_counter()
    return {
        "separate": t1 - t0,
        "merged": t2 - t1,
        "total": t2 - t0,
        "cpu": time.process_time() - cpu0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scales", default="0.02,0.05,0.1", help="comma-separated fractions of UnED"
    )
    parser.add_argument(
        "--full", action="store_true", help="append scale 1.0 (the real test_knn sizes)"
    )
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--backend", default="auto", help="auto | faiss | jax | numpy")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    scales = [float(s) for s in args.scales.split(",") if s] + ([1.0] if args.full else [])
    print(
        f"backend={args.backend} k={args.k} dim={args.dim} cpus={os.cpu_count()} (times in s)",
        flush=True,
    )
    import jax  # noqa: F401  (imported up front: a process start cost, not evaluation time)

    head = ("scale", "queries", "index", "pairs", "faiss_sep", "faiss_mrg", "faiss", "faiss_cpu",
            "load", "validate", "search", "metrics", "write", "eval", "eval_cpu", "eval/faiss",
            "cpu_ratio", "metr/search")  # fmt: skip
    print(" ".join(f"{h:>10}" for h in head), flush=True)
    for scale in scales:
        descr, labels = synthesise(scale, args.dim, args.seed)
        n_q = sum(len(descr[f"{d.name}/{d.knn_setup('test_knn').query}"]) for d in registry.DOMAINS)
        n_x = sum(len(descr[f"{d.name}/{d.knn_setup('test_knn').index}"]) for d in registry.DOMAINS)
        with tempfile.TemporaryDirectory() as tmp:
            path, info_dir = write_inputs(tmp, descr, labels)
            ours = time_descr_eval(path, info_dir, os.path.join(tmp, "work"), args.k, args.backend)
        base = time_faiss_alone(descr, args.k)
        row = [f"{scale:g}", n_q, n_x, f"{n_q * n_x:.2e}"]
        row += [f"{base[x]:.1f}" for x in ("separate", "merged", "total", "cpu")]
        row += [f"{ours[x]:.2f}" for x in ("load", "validate", "search", "metrics", "write")]
        row += [
            f"{ours['total']:.1f}",
            f"{ours['cpu']:.1f}",
            f"{ours['total'] / base['total']:.2f}x",
        ]
        row += [
            f"{ours['cpu'] / base['cpu']:.2f}x",
            f"{100 * ours['metrics'] / ours['search']:.1f}%",
        ]
        print(" ".join(f"{str(x):>10}" for x in row), flush=True)
        mp = ours["results"][f"average:common:test_knn:mp_{args.k}"]
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(
            f"{'':>10} (average:common:test_knn:mp_{args.k} = {mp:.4f}; peak RSS {rss:.1f} GB)",
            flush=True,
        )


if __name__ == "__main__":
    main()
