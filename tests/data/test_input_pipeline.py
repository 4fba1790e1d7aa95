"""Input pipeline: shapes, exact normalised values, order, padding, determinism, resume, shards."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from universal_embedding.data import input_pipeline as ip
from universal_embedding.data import normalization, registry, tfrecords, train_stream

CLIP_MEAN, CLIP_STD = normalization.MEAN_STD["clip"]


def _convert(tmp_path, domain, split, images, labels, num_shards=1, train=False):
    """Write images (uint8 arrays) as files and convert them to tfds/<domain>/<split>."""
    img_dir = tmp_path / "images"
    entries = []
    for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        rel = f"{domain}/{split}/{i:03d}.png"
        os.makedirs(img_dir / domain / split, exist_ok=True)
        Image.fromarray(pixels).save(img_dir / rel)
        entries.append({"path": rel, "class_id": label})
    info = tmp_path / f"{domain}.{split}.json"
    info.write_text(json.dumps(entries))
    prefix = registry.tfrecord_prefix(str(tmp_path / "tfds"), domain, split)
    tfrecords.convert(str(info), prefix, str(img_dir), num_shards, train=train, progress=False)
    return str(tmp_path / "tfds")


def _const(value, h, w):
    return np.full((h, w, 3), value, np.uint8)


def test_eval_constant_colour_exact_values_order_and_padding(tmp_path):
    colours = [(10 * i, 255 - 10 * i, 128) for i in range(10)]
    sizes = [(12 + i, 20 - i) for i in range(10)]  # varying aspect ratios
    imgs = [_const(c, h, w) for c, (h, w) in zip(colours, sizes, strict=True)]
    tfds = _convert(tmp_path, "cars", "test", imgs, list(range(10)))
    batches = list(ip.eval_batches(tfds, "cars", "test", batch_size=4, image_size=8,
                                   normalization="clip"))  # fmt: skip
    assert len(batches) == 3
    for b in batches:
        assert b["images"].shape == (4, 8, 8, 3) and b["images"].dtype == np.float32
        assert b["mask"].dtype == bool
    assert batches[2]["mask"].tolist() == [True, True, False, False]
    assert np.all(batches[2]["images"][2:] == 0)
    images = np.concatenate([b["images"] for b in batches])[:10]
    expected = (np.array(colours, np.float32) / 255 - CLIP_MEAN) / CLIP_STD
    np.testing.assert_allclose(images, np.broadcast_to(expected[:, None, None], images.shape),
                               atol=1e-5)  # fmt: skip
    assert ip.num_records(tfds, "cars", "test") == 10


def test_eval_resizes_shorter_side_and_center_crops(tmp_path):
    img = np.zeros((8, 16, 3), np.uint8)  # shorter side 8: resized to 4 x 8, center crop 4 cols
    img[:, :4] = (255, 0, 0)
    img[:, 4:12] = (0, 255, 0)
    img[:, 12:] = (0, 0, 255)
    tfds = _convert(tmp_path, "sop", "val", [img], [0])
    (b,) = ip.eval_batches(tfds, "sop", "val", batch_size=2, image_size=4, normalization="imagenet")
    np.testing.assert_allclose(b["images"][0], np.broadcast_to([-1.0, 1.0, -1.0], (4, 4, 3)))


def test_eval_process_slices_concatenate_to_the_global_batch(tmp_path):
    imgs = [_const(20 * i, 6, 6) for i in range(6)]
    tfds = _convert(tmp_path, "sop", "test", imgs, list(range(6)))
    kw = dict(batch_size=4, image_size=4, normalization="imagenet")
    full = list(ip.eval_batches(tfds, "sop", "test", **kw))
    parts = [list(ip.eval_batches(tfds, "sop", "test", process_index=p, process_count=2, **kw))
             for p in range(2)]  # fmt: skip
    assert len(full) == len(parts[0]) == len(parts[1]) == 2
    for i, b in enumerate(full):
        for key in ("images", "mask"):
            np.testing.assert_array_equal(
                b[key], np.concatenate([parts[0][i][key], parts[1][i][key]])
            )
    assert parts[1][1]["mask"].tolist() == [False, False]  # slice past the end: all padding
    with pytest.raises(ValueError, match="divisible"):
        next(ip.eval_batches(tfds, "sop", "test", batch_size=3, image_size=4,
                             normalization="imagenet", process_count=2))  # fmt: skip


@pytest.fixture(scope="module")
def train_tfds(tmp_path_factory):
    """18 distinct images with unique labels in 3 shards (inat) and in 1 shard (cars)."""
    tmp = tmp_path_factory.mktemp("train")
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (10, 14, 3), dtype=np.uint8) for _ in range(18)]
    _convert(tmp, "inat", "train", imgs, list(range(18)), num_shards=3, train=True)
    return _convert(tmp, "cars", "train", imgs, list(range(18)), num_shards=1, train=True)


def _take(it, n):
    return [next(it) for _ in range(n)]


def _train(tfds, domain="inat", **kw):
    args = dict(batch_size=4, image_size=8, resize_size=10, normalization="imagenet", seed=5,
                shuffle_buffer_size=8)  # fmt: skip
    args.update(kw)
    return train_stream.train_batches(tfds, domain, **args)


def test_train_shapes_ranges_offset_and_epochs(train_tfds):
    batches = _take(_train(train_tfds, label_offset=100), 9)  # 36 records = 2 epochs
    for b in batches:
        assert b["images"].shape == (4, 8, 8, 3) and b["images"].dtype == np.float32
        assert b["labels"].dtype == np.int32
        assert b["images"].min() >= -1.0 and b["images"].max() <= 1.0
    labels = np.concatenate([b["labels"] for b in batches]) - 100
    assert sorted(labels[:18]) == list(range(18)) and sorted(labels[18:]) == list(range(18))
    assert labels[:18].tolist() != labels[18:].tolist()  # reshuffled per epoch


def test_train_constant_image_exact_values(tmp_path):
    tfds = _convert(tmp_path, "rp2k", "train", [_const((255, 0, 51), 9, 13)], [3], train=True)
    (b,) = _take(_train(tfds, "rp2k", normalization="clip"), 1)
    expected = (np.array([1.0, 0.0, 0.2]) - CLIP_MEAN) / CLIP_STD
    np.testing.assert_allclose(b["images"], np.broadcast_to(expected, (4, 8, 8, 3)), atol=1e-5)
    assert b["labels"].tolist() == [3, 3, 3, 3]


def test_train_deterministic_and_exactly_resumable(train_tfds):
    a = _take(_train(train_tfds), 12)
    b = _take(_train(train_tfds), 12)
    c = _take(_train(train_tfds, seed=6), 12)
    resumed = _take(_train(train_tfds, start_batch=7), 5)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x["images"], y["images"])
        np.testing.assert_array_equal(x["labels"], y["labels"])
    assert any(not np.array_equal(x["labels"], y["labels"]) for x, y in zip(a, c, strict=True))
    for x, y in zip(a[7:], resumed, strict=True):  # start_batch=7 == batches 7.. (crosses epochs)
        np.testing.assert_array_equal(x["images"], y["images"])
        np.testing.assert_array_equal(x["labels"], y["labels"])


@pytest.mark.parametrize("domain", ["inat", "cars"])  # 3 files (by file) and 1 file (by record)
def test_train_processes_partition_the_data(train_tfds, domain):
    seen = []
    for p in range(2):
        it = _train(train_tfds, domain, batch_size=2, process_index=p, process_count=2)
        labels = [int(b["labels"][0]) for b in _take(it, 18)]
        first_epoch = set(labels[: len(set(labels))])
        assert len(first_epoch) == len(set(labels))  # an epoch = this process's share, once each
        seen.append(first_epoch)
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(18))


def test_eval_keys_of_a_shuffled_sharded_train_split(train_tfds):
    """with_keys: each record's path once, matching its image; default output unchanged."""
    kw = dict(batch_size=4, image_size=8, normalization="imagenet")
    keyed = list(ip.eval_batches(train_tfds, "inat", "train", with_keys=True, **kw))
    plain = list(ip.eval_batches(train_tfds, "inat", "train", **kw))
    assert len(keyed) == len(plain) == 5  # 18 records: 4 full batches + 2 real rows
    for k, p in zip(keyed, plain, strict=True):
        assert set(p) == {"images", "mask"} and set(k) == {"images", "mask", "keys"}
        assert k["keys"].dtype.kind == "U" and k["keys"].shape == (4,)
        np.testing.assert_array_equal(k["images"], p["images"])
        np.testing.assert_array_equal(k["mask"], p["mask"])
    assert keyed[-1]["keys"][2:].tolist() == ["", ""]  # padding
    keys = np.concatenate([b["keys"][b["mask"]] for b in keyed]).tolist()
    paths = [f"inat/train/{i:03d}.png" for i in range(18)]
    assert sorted(keys) == paths and len(set(keys)) == 18
    assert keys != paths  # shuffled across 3 shards: record order is not info order
    images_dir = os.path.join(os.path.dirname(train_tfds), "images")
    (f,) = ip.folder_batches(
        images_dir, keys, batch_size=20, image_size=8, normalization="imagenet"
    )
    records = np.concatenate([b["images"][b["mask"]] for b in keyed])
    np.testing.assert_allclose(records, f["images"][:18], atol=1e-6)  # key i is image i
    parts = [list(ip.eval_batches(train_tfds, "inat", "train", with_keys=True, process_index=p,
                                  process_count=2, **kw)) for p in range(2)]  # fmt: skip
    for i, b in enumerate(keyed):
        glued = np.concatenate([parts[0][i]["keys"], parts[1][i]["keys"]])
        assert glued.tolist() == b["keys"].tolist()


def test_folder_batches_and_find_images(tmp_path):
    base = tmp_path / "folder"
    os.makedirs(base / "sub")
    Image.fromarray(_const((255, 0, 0), 6, 9)).save(base / "b.jpg", quality=100)
    Image.fromarray(_const((0, 255, 0), 7, 5)).save(base / "sub/a.webp", lossless=True)
    Image.fromarray(_const((0, 0, 255), 5, 5)).save(base / "c.tif")
    (base / "notes.txt").write_text("not an image")
    good, bad = ip.find_images(str(base))
    assert good == ["b.jpg", "c.tif", "sub/a.webp"]
    assert [p for p, _ in bad] == ["notes.txt"]
    (b,) = ip.folder_batches(str(base), good, batch_size=4, image_size=4, normalization="imagenet")
    assert b["mask"].tolist() == [True, True, True, False]
    np.testing.assert_allclose(b["images"][1:3, 1, 1], [[-1, -1, 1], [-1, 1, -1]], atol=1e-6)
    np.testing.assert_allclose(b["images"][0, 1, 1], [1, -1, -1], atol=0.03)  # JPEG


def test_missing_split_error_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="universal_embedding.data.prepare"):
        ip.split_files(str(tmp_path), "gldv2", "index")


def test_folder_batches_leave_out_files_that_fail_when_read(tmp_path):
    base = tmp_path / "folder"
    os.makedirs(base)
    colours = {"a.png": (255, 0, 0), "c.png": (0, 0, 255), "e.png": (0, 255, 0)}
    for name, rgb in colours.items():
        Image.fromarray(_const(rgb, 6, 6)).save(base / name)
    big = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(big).save(base / "big.png")
    png = (base / "big.png").read_bytes()
    (base / "cut.png").write_bytes(png[: len(png) // 2])
    names = ["a.png", "big.png", "c.png", "cut.png", "e.png", "gone.png"]
    skipped = []
    kw = dict(batch_size=2, image_size=4, normalization="imagenet", max_bytes=len(png) - 1)
    batches = list(ip.folder_batches(str(base), names, skipped=skipped, **kw))
    assert [b["mask"].tolist() for b in batches] == [[True, True], [True, False]]
    assert all(b["images"].shape == (2, 4, 4, 3) and "keys" not in b for b in batches)
    rows = np.concatenate([b["images"][b["mask"]] for b in batches])
    want = [[1, -1, -1], [-1, -1, 1], [-1, 1, -1]]  # a, c, e in order
    np.testing.assert_allclose(rows[:, 1, 1], want, atol=1e-6)
    reasons = dict(skipped)
    assert [p for p, _ in skipped] == ["big.png", "cut.png", "gone.png"]
    assert f"over --max_image_bytes={len(png) - 1}" in reasons["big.png"]
    assert "decode" in reasons["cut.png"] and "No such file" in reasons["gone.png"]


def test_uint8_batches_are_the_rounded_pixels_of_the_float_batches(train_tfds):
    floats = _take(_train(train_tfds, normalization="clip"), 3)
    ints = _take(_train(train_tfds, normalization=None), 3)
    for f, i in zip(floats, ints, strict=True):
        assert i["images"].dtype == np.uint8 and i["images"].shape == (4, 8, 8, 3)
        np.testing.assert_array_equal(f["labels"], i["labels"])
        pixels = (f["images"] * CLIP_STD + CLIP_MEAN) * 255  # undo the normalisation
        assert np.abs(i["images"] - pixels).max() <= 0.5 + 1e-3
    kw = dict(batch_size=4, image_size=8)
    e = list(ip.eval_batches(train_tfds, "cars", "train", normalization=None, **kw))[-1]
    assert e["images"].dtype == np.uint8 and np.all(e["images"][2:] == 0)  # padding rows


def test_one_pipeline_for_a_schedule_equals_the_domain_streams(train_tfds):
    """schedule_batches == each domain's own stream taken in schedule order, resumed too."""
    schedule = [0, 1, 1, 0, 1, 0, 0, 1, 1, 1]
    kw = dict(batch_size=4, image_size=8, resize_size=10, normalization=None,
              shuffle_buffer_size=8)  # fmt: skip
    starts = [2, 1]
    one = _take(train_stream.schedule_batches(
        train_tfds, ["inat", "cars"], schedule, seeds=[5, 9], label_offsets=[0, 100],
        start_batches=starts, **kw), len(schedule))  # fmt: skip
    own = [train_stream.train_batches(train_tfds, d, seed=s, label_offset=o, start_batch=b, **kw)
           for d, s, o, b in (("inat", 5, 0, 2), ("cars", 9, 100, 1))]  # fmt: skip
    for d, got in zip(schedule, one, strict=True):
        want = next(own[d])
        np.testing.assert_array_equal(got["images"], want["images"])
        np.testing.assert_array_equal(got["labels"], want["labels"])
    with pytest.raises(ValueError, match="schedule"):
        train_stream.schedule_batches(train_tfds, ["inat", "cars"], None, seeds=[5, 9], **kw)
