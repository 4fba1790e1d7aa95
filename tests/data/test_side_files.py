"""Conversion side files live in _meta/: `<prefix>*` matches the shards alone, and side files
of earlier versions (`<prefix>.summary.json`, `<prefix>.skipped.txt`) are ignored, removed by a
new conversion and moved by prepare."""

import glob
import json
import os

import numpy as np
from PIL import Image

from universal_embedding.data import input_pipeline, prepare, registry, side_files, tfrecords


def _images(folder, n, bad=()):
    entries = []
    for i in range(n):
        path = os.path.join(folder, f"c/{i}.png")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if i in bad:
            open(path, "wb").write(b"not an image")
        else:
            Image.fromarray(np.full((4, 4, 3), i, np.uint8)).save(path)
        entries.append({"path": f"c/{i}.png", "class_id": i % 3})
    return entries


def _legacy(prefix):
    open(prefix + ".summary.json", "w").write(json.dumps({"shard_records": [99, 99]}))
    open(prefix + ".skipped.txt", "w").write("old\tgone\n")


def test_prefix_glob_matches_only_the_shards(tmp_path):
    entries = _images(str(tmp_path / "images"), 7, bad={2})
    info = tmp_path / "train.json"
    info.write_text(json.dumps(entries))
    prefix = registry.tfrecord_prefix(str(tmp_path / "tfds"), "cars", "train")
    os.makedirs(os.path.dirname(prefix))
    _legacy(prefix)  # left by an earlier version: readers must not take it for a shard
    assert tfrecords.shard_files(prefix) == []
    summary = tfrecords.convert(
        str(info), prefix, str(tmp_path / "images"), 2, train=True, skip_bad_images=True,
        progress=False,
    )  # fmt: skip
    shards = [registry.shard_name(prefix, i, 2) for i in range(2)]
    assert sorted(glob.glob(prefix + "*")) == shards  # the old side files are gone too
    assert tfrecords.shard_files(prefix) == shards
    meta = os.path.join(os.path.dirname(prefix), "_meta")
    assert sorted(os.listdir(meta)) == ["cars.train.tfrecord.skipped.txt",
                                        "cars.train.tfrecord.summary.json"]  # fmt: skip
    assert side_files.skipped_path(prefix) == os.path.join(meta, "cars.train.tfrecord.skipped.txt")
    assert open(side_files.skipped_path(prefix)).read().startswith("c/2.png\t")
    assert tfrecords.read_summary(prefix)["shard_records"] == summary.shard_records == [3, 3]
    assert input_pipeline.num_records(str(tmp_path / "tfds"), "cars", "train") == 6


def test_readers_ignore_old_side_files_and_prepare_moves_them(tmp_path):
    data = tmp_path / "data"
    entries = _images(str(data / "images"), 3)
    os.makedirs(data / "info_files" / "cars")
    (data / "info_files" / "cars" / "test.json").write_text(json.dumps(entries))
    tfds = str(data / "tfds")
    prefix = registry.tfrecord_prefix(tfds, "cars", "test")
    prepare.prepare(str(data), ["cars"], workers=1)
    # What an earlier version left: its summary and skipped list beside the shard.
    os.replace(side_files.summary_path(prefix), prefix + ".summary.json")
    open(prefix + ".skipped.txt", "w").write("")
    os.rmdir(os.path.dirname(side_files.summary_path(prefix)))
    assert input_pipeline.split_files(tfds, "cars", "test") == [prefix]
    assert input_pipeline.num_records(tfds, "cars", "test") == 3  # its summary is still read
    batches = input_pipeline.eval_batches(
        tfds, "cars", "test", batch_size=4, image_size=4, normalization="imagenet"
    )
    assert sum(int(b["mask"].sum()) for b in batches) == 3
    prepare.prepare(str(data), ["cars"], workers=1)  # moves them; the split stays complete
    assert glob.glob(prefix + "*") == [prefix]
    assert tfrecords.read_summary(prefix)["num_records"] == 3
    assert os.path.isfile(side_files.skipped_path(prefix))
