"""kNN evaluation speed at growing UnED sizes vs faiss-cpu exact search alone (same run).

    .venv/bin/python benchmarks/knn.py             # scales 0.02, 0.05, 0.1: minutes on 2 cores
    .venv/bin/python benchmarks/knn.py --scales=0.1,0.3
    .venv/bin/python benchmarks/knn.py --full            # ... up to the real test_knn sizes

Synthetic 64-d unit descriptors and random labels with the registry's test_knn split
sizes times the scale (met queries partly unmatched, gldv2 queries multi-label). The
whole descr_eval path (read .npz and info files, validate, search, metrics, write
results) is timed in-process and compared with faiss IndexFlatIP (default settings)
running the same searches: per domain for separate, all queries vs the merged index
for common, k+1 where the query split is its own index (faiss columns read n/a where faiss
does not import, e.g. on the GPU machine, or with --no_faiss).

    python benchmarks/knn.py --scales=1.0 --torch_reference --out knn.json   # on a GPU

--torch_reference also runs every one of those searches through ours (`knn.search`) and
through torch (chunked float32 matmul + torch.topk, benchmarks/knn_torch.py), timed alike,
and checks that the neighbour ids agree up to ties; skipped, with the reason printed, when
torch or its CUDA device is missing (--torch_device=cpu runs it on the CPU). Never imports
TensorFlow.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import tempfile
import time

import numpy as np

from universal_embedding import settings
from universal_embedding.configs import config_knn_descr_eval
from universal_embedding.data import registry
from universal_embedding.data.info_files import load_splits
from universal_embedding.knn import descriptors, evaluate
from universal_embedding.knn.search import resolve_backend
from universal_embedding.report import results_files

try:  # run as a script (benchmarks/ on sys.path) or as the module benchmarks.knn
    import knn_torch
except ImportError:
    from benchmarks import knn_torch

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
    """descr_eval's calls (plan, load, evaluate, write results), timed one by one."""
    c = config_knn_descr_eval.get_config()
    c.descr_path, c.info_files_dir, c.top_k, c.knn_search = descr_path, info_dir, k, backend
    t0, cpu0 = time.perf_counter(), time.process_time()
    plan = settings.eval_plan(c)
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
    results_files.write_results(workdir, out.results, plan.domains, plan.knn_names, plan.k)
    t_write = time.perf_counter() - t1
    total, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return dict(
        load=t_load, **out.timings, write=t_write, total=total, cpu=cpu, results=out.results
    )


def time_faiss_alone(descr: dict, k: int) -> dict | None:
    """faiss IndexFlatIP, default settings: separate per domain + all queries vs merged index.

    None when faiss does not import.
    """
    try:
        import faiss
    except ImportError:
        return None

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


def parse_args(argv=None) -> argparse.Namespace:
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
    parser.add_argument("--no_faiss", action="store_true", help="skip the faiss baseline")
    parser.add_argument(
        "--torch_reference", action="store_true", help="same searches in torch, ids compared"
    )
    parser.add_argument("--torch_device", default="cuda", help="cuda (skip without) | cpu")
    parser.add_argument("--out", default="", help="JSON file for every measured row")
    return parser.parse_args(argv)


HEAD = ("scale", "queries", "index", "pairs", "faiss_sep", "faiss_mrg", "faiss", "faiss_cpu",
        "load", "validate", "search", "metrics", "write", "eval", "eval_cpu", "eval/faiss",
        "cpu_ratio", "metr/search")  # fmt: skip


def measure(args, scale: float) -> dict:
    """One scale: descr_eval timed stage by stage, faiss alone, optionally the torch reference."""
    descr, labels = synthesise(scale, args.dim, args.seed)
    n_q = sum(len(descr[f"{d.name}/{d.knn_setup('test_knn').query}"]) for d in registry.DOMAINS)
    n_x = sum(len(descr[f"{d.name}/{d.knn_setup('test_knn').index}"]) for d in registry.DOMAINS)
    with tempfile.TemporaryDirectory() as tmp:
        path, info_dir = write_inputs(tmp, descr, labels)
        ours = time_descr_eval(path, info_dir, os.path.join(tmp, "work"), args.k, args.backend)
    row = {"scale": scale, "queries": n_q, "index": n_x, "descr_eval": ours}
    row["faiss"] = None if args.no_faiss else time_faiss_alone(descr, args.k)
    if args.torch_reference:
        device, why = knn_torch.torch_device(args.torch_device)
        row["torch_reference"] = (
            knn_torch.run_reference(descr, args.k, args.backend, device)
            if device
            else {"skipped": why}
        )
    return row


def format_row(row: dict, k: int) -> str:
    """The table line of one scale (faiss columns n/a without faiss), then its notes."""
    ours, base = row["descr_eval"], row["faiss"]
    n_q, n_x = row["queries"], row["index"]
    cells = [f"{row['scale']:g}", n_q, n_x, f"{n_q * n_x:.2e}"]
    keys = ("separate", "merged", "total", "cpu")
    cells += [f"{base[x]:.1f}" for x in keys] if base else ["n/a"] * 4
    cells += [f"{ours[x]:.2f}" for x in ("load", "validate", "search", "metrics", "write")]
    cells += [f"{ours['total']:.1f}", f"{ours['cpu']:.1f}"]
    if base:
        cells += [f"{ours['total'] / base['total']:.2f}x", f"{ours['cpu'] / base['cpu']:.2f}x"]
    else:
        cells += ["n/a", "n/a"]
    cells.append(f"{100 * ours['metrics'] / ours['search']:.1f}%")
    mp = ours["results"][f"average:common:test_knn:mp_{k}"]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    lines = [
        " ".join(f"{str(x):>10}" for x in cells),
        f"{'':>10} (average:common:test_knn:mp_{k} = {mp:.4f}; peak RSS {rss:.1f} GB)",
    ]
    ref = row.get("torch_reference")
    if ref and "skipped" in ref:
        lines.append(f"{'':>10} torch reference skipped: {ref['skipped']}")
    elif ref:
        t, a = ref["seconds"], ref["agreement"]
        lines.append(
            f"{'':>10} torch reference ({ref['device']}): search ours {t['ours']:.2f} s "
            f"(merged {t['ours_merged']:.2f}), torch {t['torch']:.2f} s (merged "
            f"{t['torch_merged']:.2f}), ours/torch {t['ours'] / t['torch']:.2f}x; ids of "
            f"{a['rows']} query rows (separate + merged): {a['identical']} identical, "
            f"{a['tied']} differ by ties, "
            f"{a['mismatched']} mismatched (max score diff {a['max_score_diff']:.1e})"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    args = parse_args(argv)
    scales = [float(s) for s in args.scales.split(",") if s] + ([1.0] if args.full else [])
    import jax  # imported up front: a process start cost, not evaluation time

    backend = resolve_backend(args.backend)
    print(
        f"backend={args.backend} ({backend}) k={args.k} dim={args.dim} cpus={os.cpu_count()} "
        f"device={jax.devices()[0].device_kind} (times in s)",
        flush=True,
    )
    print(" ".join(f"{h:>10}" for h in HEAD), flush=True)
    rows = []
    for scale in scales:
        rows.append(measure(args, scale))
        print(format_row(rows[-1], args.k), flush=True)
    failed = [
        r for r in rows if r.get("torch_reference", {}).get("agreement", {}).get("mismatched")
    ]
    result = {
        "device": jax.devices()[0].device_kind,
        "backend": backend,
        "args": vars(args),
        "rows": rows,
        "tensorflow_imported": "tensorflow" in sys.modules,
    }
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
    if result["tensorflow_imported"]:
        raise SystemExit("benchmarks/knn.py imported TensorFlow: it must not.")
    if failed:
        raise SystemExit(
            f"torch reference: neighbour ids mismatched at scales {[r['scale'] for r in failed]}"
        )


if __name__ == "__main__":
    main()
