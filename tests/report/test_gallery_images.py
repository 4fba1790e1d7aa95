"""neighbours.html images: the original files under images_dir, else the TFRecord bytes."""

import os

from universal_embedding.data import info_files
from universal_embedding.report import gallery_images

KEY = "sop/test"


def test_original_files_then_the_tfrecords_give_the_same_bytes(data_dir, tmp_path):
    info_dir = os.path.join(data_dir, "info_files")
    images_dir = gallery_images.default_images_dir(info_dir + os.sep)
    assert images_dir == os.path.join(data_dir, "images")
    infos = info_files.load_splits(info_dir, [KEY])
    paths = infos[KEY].paths
    originals = gallery_images.original_files(images_dir, infos)
    assert originals(KEY, 1) == os.path.join(images_dir, paths[1])
    assert gallery_images.original_files(str(tmp_path), infos)(KEY, 1) is None
    tfds_dir = os.path.join(data_dir, "tfds")
    from_files = gallery_images.image_loader(images_dir, tfds_dir, infos)(KEY, [1, 4])
    from_records = gallery_images.image_loader(str(tmp_path), tfds_dir, infos)(KEY, [1, 4])
    for p in (1, 4):
        with open(os.path.join(images_dir, paths[p]), "rb") as f:
            assert from_files[p] == from_records[p] == f.read()


def test_missing_records_give_none(data_dir, tmp_path):
    infos = info_files.load_splits(os.path.join(data_dir, "info_files"), [KEY])
    got = gallery_images.image_loader(str(tmp_path), str(tmp_path / "no_tfds"), infos)(KEY, [0])
    assert got == {0: None}
