"""Converter round trips: order, labels, formats, escaped names, bad images, safe writing."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from universal_embedding.data import image_files, tfrecords

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _save(path, pixels, fmt, mode="RGB", **kw):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(pixels).convert(mode).save(path, format=fmt, **kw)


def _pixels(seed, h=12, w=16):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _read_records(files):
    out = []
    for raw in tf.data.TFRecordDataset(files).as_numpy_iterator():
        ex = tf.train.Example.FromString(raw)
        f = ex.features.feature
        out.append(
            (
                f["key"].bytes_list.value[0].decode(),
                list(f["class_id"].int64_list.value),
                f["image_bytes"].bytes_list.value[0],
            )
        )
    return out


def _write_info(path, entries):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(entries, f, ensure_ascii=False)
    return str(path)


@pytest.fixture
def formats_dir(tmp_path):
    """Images in every accepted format plus an rp2k-style #U-escaped unicode name."""
    img = tmp_path / "images"
    _save(str(img / "a/rgb.jpg"), _pixels(0), "JPEG", quality=95)
    _save(str(img / "a/rgb.png"), _pixels(1), "PNG")
    _save(str(img / "a/gray.jpg"), _pixels(2), "JPEG", mode="L")
    _save(str(img / "a/gray.png"), _pixels(3), "PNG", mode="L")
    _save(str(img / "a/cmyk.jpg"), _pixels(4), "JPEG", mode="CMYK")
    _save(str(img / "a/lossless.webp"), _pixels(5), "WEBP", lossless=True)
    _save(str(img / "a/photo.tif"), _pixels(6), "TIFF")
    _save(str(img / "rp2k/#U996e#U6599/x.jpg"), _pixels(7), "JPEG")
    entries = [
        {"path": "a/rgb.png", "class_id": 3},
        {"path": "a/gray.jpg", "class_id": [1, 4]},
        {"path": "rp2k/饮料/x.jpg", "class_id": 0},
        {"path": "a/cmyk.jpg", "class_id": 2},
        {"path": "a/lossless.webp", "class_id": [5, 6, 7]},
        {"path": "a/rgb.jpg", "class_id": 9},
        {"path": "a/photo.tif", "class_id": 1},
        {"path": "a/gray.png", "class_id": 8},
    ]
    return img, _write_info(tmp_path / "info.json", entries), entries


def test_eval_round_trip_keeps_order_labels_and_bytes(formats_dir, tmp_path):
    img, info, entries = formats_dir
    out = str(tmp_path / "out/x.test.tfrecord")
    summary = tfrecords.convert(info, out, str(img), 1, progress=False)
    assert summary.written == 8 and summary.skipped == [] and summary.shard_records == [8]
    assert sorted(os.listdir(tmp_path / "out")) == ["_meta", "x.test.tfrecord"]
    assert os.listdir(tmp_path / "out" / "_meta") == ["x.test.tfrecord.summary.json"]
    records = _read_records([out])
    assert [r[0] for r in records] == [e["path"] for e in entries]
    expected = [
        e["class_id"] if isinstance(e["class_id"], list) else [e["class_id"]] for e in entries
    ]
    assert [r[1] for r in records] == expected
    by_key = {r[0]: r[2] for r in records}
    for key in ("a/rgb.png", "a/gray.jpg", "a/cmyk.jpg", "a/rgb.jpg", "a/gray.png"):
        assert by_key[key] == (img / key).read_bytes()  # JPEG/PNG stored as read
    assert by_key["rp2k/饮料/x.jpg"] == (img / "rp2k/#U996e#U6599/x.jpg").read_bytes()
    for key, seed in (("a/lossless.webp", 5), ("a/photo.tif", 6)):  # re-encoded losslessly
        assert by_key[key].startswith(b"\x89PNG")
        decoded = tf.io.decode_image(by_key[key], channels=3).numpy()
        np.testing.assert_array_equal(decoded, _pixels(seed))
    for _, _, raw in records:
        assert tf.io.decode_image(raw, channels=3, expand_animations=False).shape[-1] == 3
    meta = json.loads(open(tmp_path / "out" / "_meta" / "x.test.tfrecord.summary.json").read())
    assert meta["num_records"] == 8 and meta["info_entries"] == 8


def test_train_split_is_shuffled_with_seed_into_named_shards(tmp_path):
    img = tmp_path / "images"
    entries = []
    for i in range(11):
        _save(str(img / f"c/{i}.png"), _pixels(i, 4, 4), "PNG")
        entries.append({"path": f"c/{i}.png", "class_id": i})
    info = _write_info(tmp_path / "train.json", entries)

    def run(seed, name):
        out = str(tmp_path / name / "d.train.tfrecord")
        s = tfrecords.convert(info, out, str(img), 3, train=True, seed=seed, progress=False)
        files = tfrecords.shard_files(out)
        assert [os.path.basename(f) for f in files] == [
            f"d.train.tfrecord-0000{i}-of-00003" for i in range(3)
        ]
        assert s.shard_records == [4, 4, 3] and sum(s.shard_records) == 11
        return [r[0] for r in _read_records(files)]

    a, b, c = run(0, "a"), run(0, "b"), run(1, "c")
    assert sorted(a) == sorted(e["path"] for e in entries)
    assert a == b  # seeded
    assert a != c and a != [e["path"] for e in entries]


def _bad_set(tmp_path):
    img = tmp_path / "images"
    _save(str(img / "ok1.jpg"), _pixels(0), "JPEG")
    _save(str(img / "ok2.png"), _pixels(1), "PNG")
    (img / "garbage.jpg").write_bytes(b"\xff\xd8\xff this is not a jpeg")
    good = (img / "ok1.jpg").read_bytes()
    (img / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (img / "empty.png").write_bytes(b"")
    names = ["ok1.jpg", "missing1.jpg", "garbage.jpg", "ok2.png", "truncated.jpg",
             "sub/missing2.png", "empty.png"]  # fmt: skip
    info = _write_info(tmp_path / "info.json", [{"path": n, "class_id": 0} for n in names])
    bad = ["missing1.jpg", "garbage.jpg", "truncated.jpg", "sub/missing2.png", "empty.png"]
    return img, info, bad


def test_bad_images_fail_listing_every_one_and_leave_nothing(tmp_path):
    img, info, bad = _bad_set(tmp_path)
    out = tmp_path / "out" / "x.train.tfrecord"
    with pytest.raises(ValueError) as err:
        tfrecords.convert(info, str(out), str(img), 2, train=True, progress=False)
    msg = str(err.value)
    assert "5 bad image(s)" in msg and "--skip_bad_images" in msg
    for name in bad:
        assert f"  {name}: " in msg
    assert "ok1.jpg" not in msg and "missing" in msg
    assert os.listdir(tmp_path / "out") == []


def test_skip_bad_images_writes_good_ones_and_a_report(tmp_path):
    img, info, bad = _bad_set(tmp_path)
    out = str(tmp_path / "out" / "x.val.tfrecord")
    summary = tfrecords.convert(info, out, str(img), 1, skip_bad_images=True, progress=False)
    assert summary.written == 2 and [p for p, _ in summary.skipped] == bad
    assert [r[0] for r in _read_records([out])] == ["ok1.jpg", "ok2.png"]
    report_path = tmp_path / "out" / "_meta" / "x.val.tfrecord.skipped.txt"
    report = open(report_path, encoding="utf-8").read().splitlines()
    assert [line.split("\t")[0] for line in report] == bad
    assert tfrecords.read_summary(out)["num_skipped"] == 5


def test_count_check_failure_leaves_no_output(tmp_path, monkeypatch, formats_dir):
    img, info, _ = formats_dir
    monkeypatch.setattr(tfrecords, "count_records", lambda files: 0)
    with pytest.raises(RuntimeError, match="Record count check failed"):
        tfrecords.convert(info, str(tmp_path / "o" / "x"), str(img), 2, train=True, progress=False)
    assert os.listdir(tmp_path / "o") == []


def test_count_records_reads_headers(formats_dir, tmp_path):
    img, info, _ = formats_dir
    out = str(tmp_path / "o" / "x")
    tfrecords.convert(info, out, str(img), 3, train=True, progress=False)
    files = tfrecords.shard_files(out)
    assert [tfrecords.count_records([f]) for f in files] == [3, 3, 2]
    with open(files[0], "ab") as f:
        f.write(b"\x01\x02")
    with pytest.raises(ValueError, match="truncated"):
        tfrecords.count_records(files[:1])


def test_escaped_name_resolution(tmp_path):
    (tmp_path / "#U4e2d#U6587.jpg").write_bytes(b"x")
    assert image_files.escape_name("a/中文.jpg") == "a/#U4e2d#U6587.jpg"
    assert image_files.unescape_name("a/#U4e2d#U6587.jpg") == "a/中文.jpg"
    assert image_files.resolve_path(str(tmp_path), "中文.jpg") == str(tmp_path / "#U4e2d#U6587.jpg")
    assert image_files.resolve_path(str(tmp_path), "其他.jpg") is None


def test_cli_converts_and_reports(tmp_path, formats_dir):
    img, info, _ = formats_dir
    out = str(tmp_path / "cli" / "x.train.tfrecord")
    cmd = [sys.executable, os.path.join(REPO, "convert_to_tfrecord_from_file.py"),
           f"--info_file={info}", f"--output_file={out}", f"--files_dir={img}",
           "--num_shards=2", "--train", "--workers=2", "--seed=3", "--max_image_bytes=5000",
           "--allow_outside_files_dir"]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "wrote 8 records in 2 shard(s), skipped 0" in res.stdout
    assert len(_read_records(tfrecords.shard_files(out))) == 8
    # The two new flags reach the converter: an outside path is let through (then missing),
    # and a 100-byte limit makes every image too big.
    bad = [{"path": "../nowhere.png", "class_id": 0}, {"path": "a/rgb.jpg", "class_id": 0}]
    cmd[2] = f"--info_file={_write_info(tmp_path / 'bad.json', bad)}"
    cmd[-2] = "--max_image_bytes=100"
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "2 bad image(s)" in res.stderr
    assert "../nowhere.png: missing" in res.stderr and "over --max_image_bytes=100" in res.stderr


def test_max_side_downscales_large_images_only(tmp_path):
    img = tmp_path / "images"
    _save(str(img / "wide.jpg"), _pixels(0, 60, 150), "JPEG", quality=90)  # long side 150
    _save(str(img / "tall.png"), _pixels(1, 130, 40), "PNG")
    _save(str(img / "small.jpg"), _pixels(2, 30, 50), "JPEG", quality=90)  # kept as is
    _save(str(img / "exact.png"), _pixels(3, 64, 20), "PNG")  # long side == max_side: kept
    names = ["wide.jpg", "tall.png", "small.jpg", "exact.png"]
    info = _write_info(
        tmp_path / "i.json", [{"path": n, "class_id": i} for i, n in enumerate(names)]
    )
    out = str(tmp_path / "tfds" / "x.train.tfrecord")
    summary = tfrecords.convert(info, out, str(img), 2, train=True, progress=False, max_side=64)
    assert summary.written == 4 and sum(summary.shard_records) == 4
    assert tfrecords.read_summary(out)["max_side"] == 64
    records = {k: (labels, data) for k, labels, data in _read_records(tfrecords.shard_files(out))}
    assert sorted(records) == sorted(names)
    shapes = {
        k: tuple(tf.io.decode_image(d, channels=3).shape[:2]) for k, (_, d) in records.items()
    }
    # 60 x 150 -> 25.6 x 64, rounded to 26; 130 x 40 -> 64 x 19.7, rounded to 20
    assert shapes == {"wide.jpg": (26, 64), "tall.png": (64, 20), "small.jpg": (30, 50),
                      "exact.png": (64, 20)}  # fmt: skip
    assert records["wide.jpg"][1][:3] == b"\xff\xd8\xff"  # a JPEG stays a JPEG
    assert records["tall.png"][1][:4] == b"\x89PNG"
    for name in ("small.jpg", "exact.png"):
        with open(img / name, "rb") as f:
            assert records[name][1] == f.read()  # byte for byte
    assert [records[n][0] for n in names] == [[0], [1], [2], [3]]


def test_prepare_max_side_only_for_train_splits_and_redoes_on_change(tmp_path):
    from universal_embedding.data import prepare, registry

    root = tmp_path
    for split in ("train", "test"):
        entries = []
        for i in range(3):
            rel = f"cars/{split}/{i}.jpg"
            _save(str(root / "images" / rel), _pixels(i, 80, 120), "JPEG", quality=90)
            entries.append({"path": rel, "class_id": i})
        os.makedirs(root / "info_files" / "cars", exist_ok=True)
        _write_info(root / "info_files" / "cars" / f"{split}.json", entries)
    prepare.prepare(str(root), ["cars"], max_side=60)
    tfds = str(root / "tfds")

    def long_sides(split):
        files = tfrecords.shard_files(registry.tfrecord_prefix(tfds, "cars", split))
        return sorted(max(tf.io.decode_image(d).shape[:2]) for _, _, d in _read_records(files))

    assert long_sides("train") == [60, 60, 60] and long_sides("test") == [120, 120, 120]
    info = str(root / "info_files" / "cars" / "train.json")
    prefix = registry.tfrecord_prefix(tfds, "cars", "train")
    shards = len(tfrecords.shard_files(prefix))
    assert prepare.split_is_complete(info, prefix, shards, max_side=60)
    assert not prepare.split_is_complete(info, prefix, shards, max_side=0)  # reconverted
    prepare.prepare(str(root), ["cars"])
    assert long_sides("train") == [120, 120, 120]
