"""neighbours.html images: the bytes stored in the TFRecords for the shown rows, never the files
named in info files (those are only linked)."""

import base64
import dataclasses
import io
import os
import re
import urllib.parse

import numpy as np
from PIL import Image

from universal_embedding.data import info_files, record_images
from universal_embedding.knn import evaluate
from universal_embedding.report import gallery_images, neighbour_rows

KEY, TRAIN = "sop/test", "sop/train"  # test: records in info-file order; train: shuffled


def _original(data_dir, name):
    """The synthetic image file the converter wrote into the records (same bytes)."""
    with open(os.path.join(data_dir, "images", name), "rb") as f:
        return f.read()


def _infos(data_dir, keys=(KEY, TRAIN)):
    return info_files.load_splits(os.path.join(data_dir, "info_files"), list(keys))


def test_rows_of_ordered_and_shuffled_splits_are_their_records_bytes(data_dir, tmp_path):
    infos = _infos(data_dir)
    tfds_dir = os.path.join(data_dir, "tfds")
    for key in (KEY, TRAIN):
        paths, last = infos[key].paths, len(infos[key].paths) - 1
        got = gallery_images.image_loader(tfds_dir, infos)(key, [1, 4, last])
        assert got == {p: _original(data_dir, paths[p]) for p in (1, 4, last)}
    missing = gallery_images.image_loader(str(tmp_path / "no_tfds"), infos)(KEY, [0])
    assert missing == {0: None}


def test_info_names_leading_outside_or_elsewhere_still_show_the_records_own_image(data_dir):
    infos = _infos(data_dir, [KEY])
    paths = list(infos[KEY].paths)
    hostile = [*paths]
    hostile[1] = "../../../../etc/passwd"  # outside the images folder
    hostile[2] = os.path.abspath(os.path.join(data_dir, "images", paths[5]))  # another file
    changed = {KEY: dataclasses.replace(infos[KEY], paths=tuple(hostile))}
    got = gallery_images.image_loader(os.path.join(data_dir, "tfds"), changed)(KEY, [1, 2])
    assert got == {1: _original(data_dir, paths[1]), 2: _original(data_dir, paths[2])}


def test_images_over_the_limit_are_skipped(data_dir):
    paths = _infos(data_dir, [KEY])[KEY].paths
    size = len(_original(data_dir, paths[3]))
    tfds_dir = os.path.join(data_dir, "tfds")
    got = record_images.read_images_at(tfds_dir, "sop", "test", [3], max_bytes=size - 1)
    assert got == {3: None}
    got = record_images.read_images_at(tfds_dir, "sop", "test", [3], max_bytes=size)
    assert got == {3: _original(data_dir, paths[3])}


def _solid_jpeg(colour):
    buf = io.BytesIO()
    Image.new("RGB", (24, 24), colour).save(buf, format="JPEG")
    return buf.getvalue()


def test_page_embeds_only_record_bytes_not_the_files_on_disk(data_dir, tmp_path):
    infos = _infos(data_dir, [KEY])
    paths = infos[KEY].paths
    decoys = tmp_path / "images"  # images_dir holds other pictures under the same names
    for name in paths:
        (decoys / name).parent.mkdir(parents=True, exist_ok=True)
        (decoys / name).write_bytes(_solid_jpeg((255, 0, 255)))
    rows = np.random.default_rng(0).normal(size=(len(paths), 4)).astype(np.float32)
    found = evaluate.run_evaluation(
        {KEY: rows / np.linalg.norm(rows, axis=1, keepdims=True)},
        {KEY: infos[KEY].labels},
        domains=["sop"], separate_knns=["test_knn"], merged_knns=[], k=2,
        backend="numpy", keep_neighbours=True,
    ).neighbours  # fmt: skip
    (page,) = gallery_images.write_neighbours(
        str(tmp_path / "w"), found, infos, images_dir=str(decoys),
        tfds_dir=os.path.join(data_dir, "tfds"), num_queries=100, seed=0, k=2,
        thumb_size=32, per_page=200,
    )  # fmt: skip
    html = open(page, encoding="utf-8").read()
    uris = set(re.findall(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+", html))
    records = {neighbour_rows.thumbnail(_original(data_dir, n), 32).uri for n in paths}
    assert uris and uris <= records  # every shown picture is a record's, all rows shown
    assert uris == records
    decoy = neighbour_rows.thumbnail(_solid_jpeg((255, 0, 255)), 32).uri
    assert decoy not in html
    for uri in uris:  # and each decodes to a picture (the record's, by the equality above)
        data = base64.b64decode(uri.split(",", 1)[1])
        assert Image.open(io.BytesIO(data)).size[0] <= 32
    assert f'href="../images/{urllib.parse.quote(paths[0])}"' in html  # linked, not read
