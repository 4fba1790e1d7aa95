"""End to end: `main` training a tiny model on 224 crops of 1024x768 JPEGs (one domain), input
bound on this host, against the plain reference pipeline alone on the same files.

    python benchmarks/input_e2e.py [--images 256] [--steps 40] [--data_dir DIR] [--max_side 0]

Runs, in turn: the reference pipeline (all cores, AUTOTUNE, wall-clock images/s), then
`python -m universal_embedding.main` (configs/tiny.py with a 1-layer, 16-wide ViT/32 at 224)
with reduced-size decode on and off, then the reference again. Training speed is the median
of the logged `train/images_per_second` windows after the first (which holds compilation).
--max_side N also trains on a copy of the set converted with --max_side N (not the same files:
the reference still reads the originals).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import jpeg_sets

from universal_embedding import writers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BATCH = 32


def reference_rate(tfds: str, batches: int = 12) -> float:
    """Wall-clock images/s of the reference pipeline with all cores (after 2 warm-up batches)."""
    it = jpeg_sets.reference_batches(tfds, BATCH, threads=0, domain="cars")
    for _ in range(2):
        next(it)
    t = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * BATCH / (time.perf_counter() - t)


def train_rate(base: str, workdir: str, steps: int, reduced: bool) -> tuple[float, list[float]]:
    """Median train/images_per_second of `main` after the first logged window, and all windows."""
    overrides = {
        "dataset_name": "cars", "knn_eval_names": "cars", "image_size": 224,
        "resize_size": 256, "model.patch_size": 32, "batch_size": BATCH, "eval_batch_size": BATCH,
        "num_training_steps": steps, "log_summary_steps": 5, "checkpoint_steps": 10_000,
        "frozen_epochs": 0.0, "shuffle_buffer_size": 256, "reduced_jpeg_decode": reduced,
    }  # fmt: skip
    cmd = [sys.executable, "-m", "universal_embedding.main",
           f"--config={REPO}/universal_embedding/configs/tiny.py:data_dir={base}",
           f"--workdir={workdir}"]  # fmt: skip
    cmd += [f"--config.{k}={v}" for k, v in overrides.items()]
    env = dict(os.environ, PYTHONPATH=REPO)
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    if res.returncode:
        raise SystemExit(f"training failed:\n{res.stderr[-3000:]}")
    windows = [r["train/images_per_second"] for r in writers.read_metrics(workdir)
               if "train/images_per_second" in r]  # fmt: skip
    return statistics.median(windows[1:]), windows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--data_dir", default="")
    parser.add_argument("--max_side", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_dir or tmp
        tfds = jpeg_sets.make_set(root, "1024x768", args.images, domain="cars")
        base = os.path.dirname(tfds)
        print(f"{len(os.sched_getaffinity(0))} cores, load {os.getloadavg()[0]:.1f}; "
              f"{args.images} JPEGs ~1024x768, batch {BATCH}, {args.steps} steps")  # fmt: skip
        refs = [reference_rate(tfds) for _ in range(2)]
        runs = {}
        for reduced in (True, False):
            workdir = os.path.join(tmp, f"train_{reduced}")
            runs[f"reduced decode {'on ' if reduced else 'off'}"] = train_rate(
                base, workdir, args.steps, reduced
            )
        if args.max_side:
            small = jpeg_sets.make_set(root, "1024x768", args.images, "cars", args.max_side)
            workdir = os.path.join(tmp, "train_small")
            runs[f"max_side {args.max_side} copy"] = train_rate(
                os.path.dirname(small), workdir, args.steps, False
            )
        refs += [reference_rate(tfds) for _ in range(2)]
        ref = statistics.median(refs)
        runs_text = ", ".join(f"{r:.0f}" for r in refs)
        print(f"reference pipeline alone: {ref:.0f} img/s (runs {runs_text})")
        for name, (rate, windows) in runs.items():
            text = ", ".join(f"{w:.0f}" for w in windows)
            print(f"main, {name}: {rate:.0f} img/s = x{rate / ref:.2f} reference "
                  f"(windows {text}; the first holds compilation)")  # fmt: skip
        print(f"load at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
