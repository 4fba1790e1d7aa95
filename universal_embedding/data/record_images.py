"""Encoded image bytes read back from UnED TFRecords for chosen rows of a split.

neighbours.html shows the images the evaluation embedded: the bytes stored in the records
(checked by the converter), never files named in info files or records. Evaluation splits are
stored in info-file order, so row p is record p; train splits are stored shuffled, so their
rows are found by record key, as knn/extract.py orders their descriptors. One pass over the
split's shards reads exactly the wanted records and keeps only their bytes; an image over
`max_bytes` (MAX_GALLERY_IMAGE_BYTES by default) is skipped with a warning.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence

import numpy as np
import tensorflow as tf
from absl import logging

from universal_embedding.data import registry
from universal_embedding.data.image_files import unescape_name
from universal_embedding.data.input_pipeline import file_counts, split_files

MAX_GALLERY_IMAGE_BYTES = 16 << 20  # per image shown; UnED images are well under 1 MB

_IMAGE = {registry.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string)}
_KEYED = _IMAGE | {registry.PATH_KEY: tf.io.FixedLenFeature([], tf.string)}


def _rows_in_order(files: Sequence[str], counts: Sequence[int], rows: Collection[int]) -> Iterator:
    """(row, image bytes) of the wanted rows of a split stored in row order; shards holding
    none of them are not opened, a shard is read only up to its last wanted record."""
    start = 0
    for path, count in zip(files, counts, strict=True):
        local = sorted(r - start for r in rows if start <= r < start + count)
        start += count
        if not local:
            continue
        wanted = np.zeros(local[-1] + 1, bool)
        wanted[local] = True
        keep = tf.constant(wanted)
        ds = tf.data.TFRecordDataset([path]).take(len(wanted)).enumerate()
        ds = ds.filter(lambda i, _, keep=keep: tf.gather(keep, i))
        ds = ds.map(lambda i, r: (i, tf.io.parse_single_example(r, _IMAGE)[registry.IMAGE_KEY]))
        for i, image in ds.as_numpy_iterator():
            yield start - count + int(i), image


def _rows_by_key(files: Sequence[str], names: dict[str, list[int]], batch_size: int) -> Iterator:
    """(row, image bytes) of the records whose key is a wanted row's info-file path."""
    ds = tf.data.TFRecordDataset(list(files)).batch(batch_size)
    ds = ds.map(lambda x: tf.io.parse_example(x, _KEYED))
    left = len(names)
    for batch in ds.as_numpy_iterator():
        for raw_key, image in zip(batch[registry.PATH_KEY], batch[registry.IMAGE_KEY], strict=True):
            rows = names.pop(unescape_name(raw_key.decode("utf-8")), ())
            left -= bool(rows)
            for row in rows:
                yield row, image
        if not left:
            return


def read_images_at(
    tfds_dir: str,
    domain: str,
    split: str,
    rows: Collection[int],
    paths: Sequence[str] | None = None,
    max_bytes: int = MAX_GALLERY_IMAGE_BYTES,
    batch_size: int = 256,
) -> dict[int, bytes | None]:
    """{row: the encoded image stored in the split's records for info-file row `row`} for
    each of `rows` (None: not found, or over `max_bytes`). `paths` (the info file's paths) is
    needed for train splits, whose records are matched by key; other splits are read by
    position. FileNotFoundError when the split has no TFRecords."""
    out: dict[int, bytes | None] = {int(r): None for r in rows}
    if not out:
        return out
    if split in registry.TRAIN_SPLITS:
        if paths is None:
            raise ValueError(f"{domain}/{split} is stored shuffled: pass its info-file paths.")
        names: dict[str, list[int]] = {}
        for r in out:
            names.setdefault(unescape_name(paths[r]), []).append(r)
        found = _rows_by_key(split_files(tfds_dir, domain, split), names, batch_size)
    else:
        found = _rows_in_order(*file_counts(tfds_dir, domain, split), out)
    for row, image in found:
        if len(image) > max_bytes:
            logging.warning(
                "%s/%s row %d: its image holds %d bytes, over the gallery's %d; not shown.",
                *(domain, split, row, len(image), max_bytes),
            )
            continue
        out[row] = bytes(image)
    return out
