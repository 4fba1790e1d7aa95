"""Input-pipeline throughput: images/s per CPU core for the train and eval streams at 224x224.

Generates realistic ~500x400 JPEGs in a temp dir, converts them, then times each stream.
"Per core" = images per CPU-second this process used (user + sys), which stays meaningful on a
busy machine; wall-clock images/s and its share per available core are printed too.

    python benchmarks/input_pipeline.py [--images 512] [--batches 24]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time

import numpy as np
from PIL import Image

from universal_embedding.data import input_pipeline, preprocess, registry, tfrecords


def _photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A photo-like image: smooth colour fields, edges and sensor noise (JPEGs of ~40-60 kB)."""
    small = rng.uniform(0, 255, (h // 40 + 2, w // 40 + 2, 3)).astype(np.uint8)
    img = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    img += 40 * (np.sin(xx / rng.uniform(3, 12)) * np.cos(yy / rng.uniform(3, 12)))[..., None]
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_data(root: str, n: int) -> str:
    """n JPEGs of about 500x400 (varying) + info files; converted to root/tfds. Returns tfds dir."""
    rng = np.random.default_rng(0)
    entries = []
    for i in range(n):
        h, w = (int(rng.integers(360, 440)), int(rng.integers(460, 540)))
        if i % 3 == 0:
            h, w = w, h  # some portrait images
        rel = f"bench/{i:05d}.jpg"
        os.makedirs(os.path.join(root, "images", "bench"), exist_ok=True)
        Image.fromarray(_photo(rng, h, w)).save(os.path.join(root, "images", rel), quality=90)
        entries.append({"path": rel, "class_id": i % 50})
    info = os.path.join(root, "info.json")
    with open(info, "w") as f:
        json.dump(entries, f)
    tfds = os.path.join(root, "tfds")
    for split, shards in (("train", 4), ("test", 1)):
        prefix = registry.tfrecord_prefix(tfds, "sop", split)
        tfrecords.convert(info, prefix, os.path.join(root, "images"), shards,
                          train=split == "train", progress=False)  # fmt: skip
    return tfds


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed(batches, num: int, batch_size: int, warmup: int = 2) -> tuple[float, float]:
    """(images per wall second, images per CPU second) over `num` batches after `warmup`."""
    for _ in range(warmup):
        next(batches)
    t, c = time.perf_counter(), _cpu()
    for _ in range(num):
        next(batches)
    wall, cpu = time.perf_counter() - t, _cpu() - c
    return num * batch_size / wall, num * batch_size / cpu


def stage_costs(tfds: str, repeats: int = 4) -> dict[str, float]:
    """CPU milliseconds per image of each eval stage, in tf.data over records held in memory."""
    import tensorflow as tf

    files = input_pipeline.split_files(tfds, "sop", "test")
    data = [
        preprocess.parse_record(r)["image_bytes"].numpy() for r in tf.data.TFRecordDataset(files)
    ]
    stages = {
        "read+parse only": lambda r: tf.strings.length(r),
        "decode": lambda b: tf.shape(preprocess.decode(b)),
        "decode+resize+crop": lambda b: preprocess.eval_transform(
            preprocess.decode(b), image_size=224, norm="imagenet"
        )[0, 0],
        "eval transform": lambda b: preprocess.eval_transform(
            preprocess.decode(b), image_size=224, norm="imagenet"
        ),
    }
    out = {}
    for name, fn in stages.items():
        ds = tf.data.Dataset.from_tensor_slices(data).repeat(repeats)
        ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE).batch(32).prefetch(2)
        for _ in ds.take(2):
            pass
        c = _cpu()
        for _ in ds:
            pass
        out[name] = 1000 * (_cpu() - c) / (len(data) * repeats)
    return out


def main() -> None:
    """Print throughput figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=768)
    parser.add_argument("--batches", type=int, default=24)
    parser.add_argument("--batch_size", type=int, default=32)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as root:
        tfds = make_data(root, args.images)
        bench = os.path.join(root, "images", "bench")
        kb = np.mean([os.path.getsize(os.path.join(bench, f)) for f in os.listdir(bench)]) / 1e3
        load = os.getloadavg()[0]
        print(f"{args.images} JPEGs ~500x400 q90, mean {kb:.0f} kB; {cores} cores; load {load:.1f}")
        kw = dict(batch_size=args.batch_size, image_size=224, normalization="clip")
        streams = {
            "eval": lambda: input_pipeline.eval_batches(tfds, "sop", "test", **kw),
            "train": lambda: input_pipeline.train_batches(
                tfds, "sop", resize_size=256, seed=0, shuffle_buffer_size=256, **kw
            ),
        }
        for name, make in streams.items():
            batches = args.batches
            if name == "eval":  # a finite stream: time one pass (no pipeline start-up inside)
                batches = min(batches, args.images // args.batch_size - 3)
            wall, per_cpu = timed(make(), batches, args.batch_size)
            print(
                f"{name:5s}: {per_cpu:6.0f} img/s per CPU core (CPU time), "
                f"{wall:6.0f} img/s wall = {wall / cores:6.0f} per available core"
            )
        for stage, ms in stage_costs(tfds).items():
            print(f"  {stage:22s} {ms:5.2f} ms/img = {1000 / ms:5.0f} img/s on one core")


if __name__ == "__main__":
    main()
