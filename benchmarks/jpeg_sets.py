"""Benchmark data and the plain reference pipeline, shared by input_pipeline.py and input_e2e.py.

Sets of photo-like JPEGs (q90, ~2.3 bits per pixel, a third of them portrait) at three sizes,
converted to TFRecords with the project's converter; and the reference: the original code's
plain tf.data style (parse, decode_image, resize 256x256, random crop 224, random flip,
normalise, parallel map with AUTOTUNE, batch).
"""

from __future__ import annotations

import json
import os
import resource

import numpy as np
from PIL import Image

from universal_embedding.data import input_pipeline, normalization, preprocess, registry, tfrecords

SIZES = {"500x375": (375, 500), "1024x768": (768, 1024), "2048x1536": (1536, 2048)}
TRAINING_TARGET = 5260  # img/s: 1.5x timm compiled ViT-B/16 training on one H100/H200


def cpu_seconds() -> float:
    """User + system CPU seconds this process has used (all its threads)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def photo(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A photo-like image: smooth colour fields, edges and sensor noise."""
    small = rng.uniform(0, 255, (h // 40 + 2, w // 40 + 2, 3)).astype(np.uint8)
    img = np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC), np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    img += 40 * (np.sin(xx / rng.uniform(3, 12)) * np.cos(yy / rng.uniform(3, 12)))[..., None]
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def make_set(root: str, name: str, n: int, domain: str = "sop", max_side: int = 0) -> str:
    """n JPEGs of about SIZES[name] (+-5%) converted to root/<name>/tfds (train: 4 shards; test:
    1 shard, each image 3 times; info files in root/<name>/info_files); reused when already
    there. Returns the tfds dir."""
    base = os.path.join(root, name + (f"-max{max_side}" if max_side else ""))
    tfds = os.path.join(base, "tfds")
    if os.path.isfile(tfrecords.summary_path(registry.tfrecord_prefix(tfds, domain, "test"))):
        return tfds
    images = os.path.join(root, name, "images")
    rng = np.random.default_rng(sum(SIZES[name]))
    entries = []
    for i in range(n):
        h, w = (int(s * rng.uniform(0.95, 1.05)) for s in SIZES[name])
        if i % 3 == 0:
            h, w = w, h  # some portrait images
        rel = f"{i:05d}.jpg"
        path = os.path.join(images, rel)
        if not os.path.isfile(path):
            os.makedirs(images, exist_ok=True)
            Image.fromarray(photo(rng, h, w)).save(path, quality=90)
        entries.append({"path": rel, "class_id": i % 50})
    os.makedirs(base, exist_ok=True)
    # test: every image 3 times, so that a timed eval pass never reaches the end of the split
    for split, shards, listed in (("train", 4, entries), ("test", 1, entries * 3)):
        info = os.path.join(base, "info_files", domain, f"{split}.json")
        os.makedirs(os.path.dirname(info), exist_ok=True)
        with open(info, "w") as f:
            json.dump(listed, f)
        prefix = registry.tfrecord_prefix(tfds, domain, split)
        tfrecords.convert(info, prefix, images, shards, train=split == "train", progress=False,
                          max_side=max_side if split == "train" else 0)  # fmt: skip
    return tfds


def mean_kb(root: str, name: str) -> float:
    """Mean JPEG file size of a set, kB."""
    folder = os.path.join(root, name, "images")
    return float(np.mean([os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)]))


def reference_batches(tfds: str, batch_size: int, threads: int, domain: str = "sop"):
    """The plain pipeline of the original code's style over the train split, endless."""
    import tensorflow as tf

    mean, std = (np.array(v, np.float32) for v in normalization.mean_std("clip"))

    def load(serialized):
        rec = preprocess.parse_record(serialized)
        image = tf.io.decode_image(rec["image_bytes"], channels=3, expand_animations=False)
        image = tf.image.resize(image, [256, 256])
        image = tf.image.random_crop(image, [224, 224, 3])
        image = tf.image.random_flip_left_right(image)
        return (image / 255.0 - mean) / std, rec["label"]

    files = input_pipeline.split_files(tfds, domain, "train")
    ds = tf.data.TFRecordDataset(files).repeat()
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
    ds = ds.prefetch(tf.data.AUTOTUNE).with_options(input_pipeline.pipeline_options(threads))
    return ds.as_numpy_iterator()


def decode_only_batches(tfds: str, batch_size: int, threads: int, ratio: int = 0,
                        min_side: int = 256, domain: str = "sop"):  # fmt: skip
    """Parse and JPEG-decode only, endless: the ceiling of any stream that decodes these records
    with the CPU's libjpeg. ratio: the DCT scaling (1, 2, 4 or 8); 0 = per image the train
    stream's reduced-decode ratio (short side // r >= min_side). Yields one pixel per image, so
    nothing but the decode is timed."""
    import tensorflow as tf

    from universal_embedding.data import crops

    def decode_at(image_bytes, r):
        return lambda: tf.io.decode_jpeg(image_bytes, channels=3, ratio=r)[0, 0]

    def load(serialized):
        image_bytes = preprocess.parse_record(serialized)["image_bytes"]
        if ratio:
            return decode_at(image_bytes, ratio)()
        hw = tf.image.extract_jpeg_shape(image_bytes)[:2]
        index = tf.reduce_sum(
            tf.cast(crops.reduction_ratio(hw[0], hw[1], min_side) >= crops.RATIOS[1:], tf.int32)
        )
        return tf.switch_case(index, [decode_at(image_bytes, r) for r in crops.RATIOS])

    files = input_pipeline.split_files(tfds, domain, "train")
    ds = tf.data.TFRecordDataset(files).repeat()
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
    ds = ds.prefetch(tf.data.AUTOTUNE).with_options(input_pipeline.pipeline_options(threads))
    return ds.as_numpy_iterator()
