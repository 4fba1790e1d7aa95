"""An info file reordered after conversion is caught before evaluation, naming the first row."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from universal_embedding.data import info_files, record_keys, registry, tfrecords
from universal_embedding.knn import evaluator

NAMES = ["cars/a.png", "cars/b.png", "cars/c.png", "cars/#U996e.png"]


@pytest.fixture
def converted(tmp_path):
    """cars/test converted from a 4-entry info file; returns (info_dir, tfds_dir, info_file)."""
    images, info_dir, tfds = tmp_path / "images", tmp_path / "info", tmp_path / "tfds"
    os.makedirs(images / "cars")
    os.makedirs(info_dir / "cars")
    for i, name in enumerate(NAMES):
        pixels = np.full((4, 4, 3), 40 * i, np.uint8)
        Image.fromarray(pixels).save(images / name)
    info = info_dir / "cars" / "test.json"
    info.write_text(json.dumps([{"path": n, "class_id": i} for i, n in enumerate(NAMES)]))
    prefix = registry.tfrecord_prefix(str(tfds), "cars", "test")
    tfrecords.convert(str(info), prefix, str(images), 2, progress=False)
    return str(info_dir), str(tfds), info


def _rewrite(info, names, indent=None):
    entries = [{"path": n, "class_id": 0} for n in names]
    info.write_text(json.dumps(entries, indent=indent))


def test_unchanged_info_file_passes_without_reading_records(converted, monkeypatch):
    info_dir, tfds, _ = converted
    monkeypatch.setattr(record_keys, "read_keys", lambda *a: pytest.fail("records were read"))
    record_keys.check_record_keys(tfds, "cars", "test", NAMES, info_dir)


def test_same_order_other_bytes_passes_by_keys(converted):
    info_dir, tfds, info = converted
    _rewrite(info, NAMES, indent=2)  # hash differs, order is the same
    record_keys.check_record_keys(tfds, "cars", "test", NAMES, info_dir)
    escaped = ["cars/a.png", "cars/b.png", "cars/c.png", "cars/饮.png"]  # rp2k spelling
    record_keys.check_record_keys(tfds, "cars", "test", escaped)
    assert record_keys.read_keys(tfds, "cars", "test") == NAMES


def test_reordered_info_file_refused_naming_first_row(converted):
    info_dir, tfds, info = converted
    reordered = [NAMES[0], NAMES[2], NAMES[1], NAMES[3]]
    _rewrite(info, reordered)
    with pytest.raises(ValueError) as e:
        record_keys.check_record_keys(tfds, "cars", "test", reordered, info_dir)
    msg = str(e.value)
    assert "row 1" in msg and "'cars/c.png'" in msg and "'cars/b.png'" in msg
    assert "\n" not in msg and "Re-convert" in msg
    infos = info_files.load_splits(str(info_dir), ["cars/test"])
    with pytest.raises(ValueError, match=r"split 'test'.*row 1: the info file has 'cars/c.png'"):
        evaluator.check_record_counts(tfds, infos, info_dir)
