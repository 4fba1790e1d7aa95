"""Encoded image bytes read back from UnED TFRecords, found by their `key` (relative path).

Used to draw neighbours.html when the original image files are not on disk.
"""

from __future__ import annotations

from collections.abc import Iterable

import tensorflow as tf

from universal_embedding.data import registry
from universal_embedding.data.image_files import unescape_name
from universal_embedding.data.input_pipeline import split_files

_FEATURES = {
    registry.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
    registry.PATH_KEY: tf.io.FixedLenFeature([], tf.string),
}


def read_images_by_key(
    tfds_dir: str, domain: str, split: str, keys: Iterable[str], batch_size: int = 256
) -> dict[str, bytes]:
    """{key: encoded image bytes} for the records whose key is in `keys` (absent keys left out)."""
    wanted = {unescape_name(k): k for k in keys}
    found: dict[str, bytes] = {}
    if not wanted:
        return found
    ds = tf.data.TFRecordDataset(split_files(tfds_dir, domain, split))
    ds = ds.batch(batch_size).map(lambda x: tf.io.parse_example(x, _FEATURES))
    for batch in ds.as_numpy_iterator():
        for raw_key, image in zip(batch[registry.PATH_KEY], batch[registry.IMAGE_KEY], strict=True):
            key = wanted.get(unescape_name(raw_key.decode("utf-8")))
            if key is not None:
                found[key] = bytes(image)
        if len(found) == len(wanted):
            break
    return found
