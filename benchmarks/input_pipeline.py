"""Input-pipeline throughput per CPU core (ours vs the plain reference) and decode fidelity.

    python benchmarks/input_pipeline.py [--images 200] [--batches 6] [--repeats 3] [--threads 1]
        [--sets 500x375,1024x768,2048x1536] [--data_dir DIR] [--max_side 0] [--no_fidelity]
    python benchmarks/input_pipeline.py --domains_lever   # 8 pipelines vs 1 for 8 domains

Makes three sets of photo-like JPEGs (jpeg_sets.py; --data_dir keeps them for reuse), then, in
one run on the same files, times each stream: images per CPU-second this process used (user +
sys, all threads), every pipeline limited to --threads threads (same tf.data options for all),
each figure the median of --repeats runs taken in turn. Streams:
  reference          the original code's plain style (jpeg_sets.reference_batches)
  train previous     this project's train stream before this work (full decode, resize, crop,
                     flip, float normalise), same records, shuffling and seeds
  train (default)    crop-aware decode at full resolution + crop_and_resize, uint8 out
  train reduced      + reduced-size (DCT) decode (config.reduced_jpeg_decode=True)
  train reduced f32  the same with normalised float32 out (what uint8 saves)
  eval previous      the eval stream before (float out); eval uint8: the eval stream now
  decode only        parse + decode, nothing else (full, at the train stream's reduced-decode
                     ratio, at ratio 8): the ceiling of any stream decoding these files on the CPU
--max_side N adds "train on max_side copy": the default train stream on a copy of each set
converted with --max_side N. Fidelity: mean absolute difference (grey levels, 0..255) of final
crops, reduced vs full decode, on each set and on the demo's synthetic images.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import jpeg_sets
import numpy as np

from universal_embedding.data import crops, input_pipeline, preprocess, train_stream

BATCH = 32


def timed(batches, num: int, warmup: int = 2) -> tuple[float, float]:
    """(images per CPU second, images per wall second) over `num` batches after `warmup`."""
    for _ in range(warmup):
        next(batches)
    t, c = time.perf_counter(), jpeg_sets.cpu_seconds()
    for _ in range(num):
        next(batches)
    return num * BATCH / (jpeg_sets.cpu_seconds() - c), num * BATCH / (time.perf_counter() - t)


def previous_train(tfds: str, threads: int):
    """The train stream's map as it was: decode_image, resize, crop, flip, float normalise."""
    import tensorflow as tf

    files = input_pipeline.split_files(tfds, "sop", "train")
    records = tf.data.TFRecordDataset(files).repeat().shuffle(256, seed=0)

    def load(counter, serialized):
        rec = preprocess.parse_record(serialized)
        image = preprocess.train_transform(
            preprocess.decode(rec["image_bytes"]), tf.stack([tf.constant(0, tf.int64), counter]),
            image_size=224, resize_size=256, norm="clip",
        )  # fmt: skip
        return {"images": image, "labels": tf.cast(rec["label"], tf.int32)}

    ds = tf.data.Dataset.zip(tf.data.Dataset.counter(), records)
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(BATCH)
    return ds.prefetch(2).with_options(input_pipeline.pipeline_options(threads)).as_numpy_iterator()


def previous_eval(tfds: str, threads: int):
    """The eval stream's map as it was: full decode_image, resize shorter side, center crop."""
    import tensorflow as tf

    def load(serialized):
        image = preprocess.decode(preprocess.parse_record(serialized)["image_bytes"])
        return preprocess.eval_transform(image, image_size=224, norm="clip")

    ds = tf.data.TFRecordDataset(input_pipeline.split_files(tfds, "sop", "test")).repeat()
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(BATCH)
    return ds.prefetch(2).with_options(input_pipeline.pipeline_options(threads)).as_numpy_iterator()


def streams(tfds: str, threads: int, small_tfds: str | None) -> dict:
    def train(norm, reduce, where=tfds):
        return lambda: train_stream.train_batches(
            where, "sop", batch_size=BATCH, image_size=224, resize_size=256, normalization=norm,
            seed=0, shuffle_buffer_size=256, reduced_decode=reduce, threads=threads,
        )  # fmt: skip

    def eval_uint8():
        while True:  # endless: one fresh pass after another
            yield from input_pipeline.eval_batches(
                tfds, "sop", "test", batch_size=BATCH, image_size=224, normalization=None,
                threads=threads,
            )  # fmt: skip

    out = {
        "reference": lambda: jpeg_sets.reference_batches(tfds, BATCH, threads),
        "train previous": lambda: previous_train(tfds, threads),
        "train (default)": train(None, False),
        "train reduced": train(None, True),
        "train reduced f32": train("clip", True),
        "eval previous": lambda: previous_eval(tfds, threads),
        "eval uint8": eval_uint8,
    }
    for label, ratio in (("full", 1), ("train ratio", 0), ("ratio 8", 8)):
        out[f"decode only ({label})"] = lambda r=ratio: jpeg_sets.decode_only_batches(
            tfds, BATCH, threads, r
        )
    if small_tfds:
        out["train on max_side copy"] = train(None, False, small_tfds)
    return out


def throughput(tfds: str, args, small_tfds: str | None) -> dict[str, float]:
    """Median images per CPU second of every stream (repeats taken in turn)."""
    makers = streams(tfds, args.threads, small_tfds)
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in makers}
    for _ in range(args.repeats):
        for name, make in makers.items():
            runs[name].append(timed(make(), args.batches))
    med = {k: statistics.median(c for c, _ in v) for k, v in runs.items()}
    ref = med["reference"]
    for name, per_cpu in med.items():
        wall = statistics.median(w for _, w in runs[name])
        spread = ", ".join(f"{c:.0f}" for c, _ in runs[name])
        print(f"  {name:24s} {per_cpu:6.0f} img/s/core ({spread}) x{per_cpu / ref:4.2f} ref; "
              f"{wall:6.0f} img/s wall; {jpeg_sets.TRAINING_TARGET / per_cpu:5.1f} cores "
              "for 5,260 img/s")  # fmt: skip
    return med


def domains_lever(tfds: str, root: str, repeats: int, steps: int = 16) -> None:
    """8 domains round robin (links to one set), all cores: eight train_batches streams vs one
    schedule_batches pipeline; images per CPU second and per wall second, medians."""
    from universal_embedding.data import registry

    names = list(registry.DOMAIN_NAMES)
    multi = os.path.join(root, "tfds8")
    src = input_pipeline.split_files(tfds, "sop", "train")
    for d in names:
        folder = os.path.dirname(registry.tfrecord_prefix(multi, d, "train"))
        os.makedirs(folder, exist_ok=True)
        for f in src:
            link = os.path.join(folder, os.path.basename(f).replace("sop.", f"{d}.", 1))
            if not os.path.exists(link):
                os.symlink(f, link)
    kw = dict(batch_size=BATCH, image_size=224, resize_size=256, normalization=None,
              shuffle_buffer_size=256)  # fmt: skip
    schedule = [i % len(names) for i in range(steps + 2 * len(names))]

    def eight():
        its = [train_stream.train_batches(multi, d, seed=i, **kw) for i, d in enumerate(names)]
        for d in schedule:
            yield next(its[d])

    def one():
        seeds = list(range(len(names)))
        return train_stream.schedule_batches(multi, names, schedule, seeds=seeds, **kw)

    runs: dict[str, list] = {"8 pipelines": [], "1 pipeline": []}
    for _ in range(repeats):
        runs["8 pipelines"].append(timed(eight(), steps, warmup=2 * len(names)))
        runs["1 pipeline"].append(timed(one(), steps, warmup=2 * len(names)))
    for name, r in runs.items():
        cpu, wall = (statistics.median(x[i] for x in r) for i in (0, 1))
        print(f"  {name:12s} {cpu:6.0f} img/s per core, {wall:6.0f} img/s wall "
              f"({', '.join(f'{c:.0f}' for c, _ in r)})")  # fmt: skip


def _ideal_train(image, seed):
    """Full decode + antialiased resize + the same crop/flip: the image without aliasing."""
    import tensorflow as tf

    u = tf.random.stateless_uniform([3], seed=seed)
    top, left = (tf.minimum(tf.cast(u[i] * 33.0, tf.int32), 32) for i in (0, 1))
    image = tf.image.resize(image, [256, 256], antialias=True)[top : top + 224, left : left + 224]
    return tf.cond(u[2] < 0.5, lambda: image[:, ::-1], lambda: image)


def eval_geometry(*, image_size: int):
    """The eval crop's geometry (preprocess.eval_size, center crop) for crops.crop_of_geometry:
    reduced and full decode of eval crops are compared at the same sample positions."""
    import tensorflow as tf

    def geometry(height, width):
        new = preprocess.eval_size(tf.stack([height, width]), image_size)
        scale = tf.cast(tf.stack([height, width]), tf.float32) / tf.cast(new, tf.float32)
        top, left = (new[0] - image_size) // 2, (new[1] - image_size) // 2
        return top, left, scale[0], scale[1], tf.constant(False)

    return geometry


def fidelity(images: list[bytes], size: int, resize: int, ideal: bool) -> dict[str, float]:
    """Mean |difference| in grey levels of final crops: reduced vs full decode (train, eval)."""
    import tensorflow as tf

    d = {"train": [], "eval": [], "ratio>1": [], "uint8 rounding": [], "full vs ideal": [],
         "reduced vs ideal": []}  # fmt: skip
    for i, raw in enumerate(images):
        b, seed = tf.constant(raw), tf.constant([0, i], tf.int64)
        full = preprocess.decode(b)
        ref = preprocess.train_transform(full, seed, image_size=size, resize_size=resize, norm="")
        red = crops.train_crop(b, seed, image_size=size, resize_size=resize, reduce=True)
        d["train"].append(float(tf.reduce_mean(tf.abs(red - ref))))
        d["uint8 rounding"].append(
            float(tf.reduce_mean(tf.abs(tf.cast(crops.to_uint8(red), tf.float32) - red)))
        )
        geometry = eval_geometry(image_size=size)
        e_ref = crops.crop_of_geometry(b, geometry, size=size, min_side=size, reduce=False)
        e_red = crops.crop_of_geometry(b, geometry, size=size, min_side=size, reduce=True)
        d["eval"].append(float(tf.reduce_mean(tf.abs(e_red - e_ref))))
        hw = tf.shape(full)[:2]
        d["ratio>1"].append(float(crops.reduction_ratio(hw[0], hw[1], resize) > 1))
        if ideal:
            target = _ideal_train(full, seed)
            d["full vs ideal"].append(float(tf.reduce_mean(tf.abs(ref - target))))
            d["reduced vs ideal"].append(float(tf.reduce_mean(tf.abs(red - target))))
    return {k: float(np.mean(v)) for k, v in d.items() if v}


def _record_images(tfds: str, n: int) -> list[bytes]:
    import tensorflow as tf

    files = input_pipeline.split_files(tfds, "sop", "test")
    return [preprocess.parse_record(r)["image_bytes"].numpy()
            for r in tf.data.TFRecordDataset(files).take(n)]  # fmt: skip


def demo_images(root: str) -> list[bytes]:
    """The JPEGs of the demo's synthetic mini-UnED (scale 0.1: same sizes, fewer images)."""
    from universal_embedding.data import synthetic

    folder = os.path.join(root, "demo_synthetic")
    if not os.path.isdir(folder):
        synthetic.write_synthetic_uned(folder, seed=0, scale=0.1)
    out = []
    for base, _, names in os.walk(os.path.join(folder, "images")):
        for name in sorted(names):
            if name.endswith(".jpg"):
                with open(os.path.join(base, name), "rb") as f:
                    out.append(f.read())
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--batches", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="tf.data threads (0 = cores)")
    parser.add_argument("--sets", default=",".join(jpeg_sets.SIZES))
    parser.add_argument("--data_dir", default="", help="keep the generated sets here")
    parser.add_argument("--max_side", type=int, default=0)
    parser.add_argument("--no_fidelity", action="store_true")
    parser.add_argument("--fidelity_only", action="store_true", help="no throughput runs")
    parser.add_argument("--domains_lever", action="store_true", help="only the 8-domain check")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_dir or tmp
        cores = len(os.sched_getaffinity(0))
        print(f"{cores} cores, load {os.getloadavg()[0]:.1f}, threads {args.threads}, "
              f"batch {BATCH}, {args.batches} batches x {args.repeats} repeats")  # fmt: skip
        if args.domains_lever:
            print("8 domains round robin, 500x375 set, all cores:")
            domains_lever(jpeg_sets.make_set(root, "500x375", args.images), root, args.repeats)
            return
        for name in args.sets.split(","):
            tfds = jpeg_sets.make_set(root, name, args.images)
            small = jpeg_sets.make_set(root, name, args.images, max_side=args.max_side) \
                if args.max_side else None  # fmt: skip
            kb = jpeg_sets.mean_kb(root, name) / 1e3
            print(f"{name}: {args.images} JPEGs q90, mean {kb:.0f} kB, load "
                  f"{os.getloadavg()[0]:.1f}")  # fmt: skip
            if not args.fidelity_only:
                throughput(tfds, args, small)
            if not args.no_fidelity:
                fid = fidelity(_record_images(tfds, 24), 224, 256, ideal=True)
                print(
                    "  fidelity (grey levels): " + ", ".join(f"{k} {v:.3f}" for k, v in fid.items())
                )
        if not args.no_fidelity:
            fid = fidelity(demo_images(root), 32, 36, ideal=False)
            print("demo synthetic images (32 crops, resize 36), fidelity: "
                  + ", ".join(f"{k} {v:.3f}" for k, v in fid.items()))  # fmt: skip


if __name__ == "__main__":
    main()
