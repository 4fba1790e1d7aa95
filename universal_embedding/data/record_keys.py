"""Do a split's TFRecords still line up with its info file? Checked before evaluating it.

Evaluation splits are stored in info-file order and scored against the info file's labels row by
row, so an info file edited after conversion (reordered, entries swapped) would give wrong
results silently. The summary the converter writes holds the info file's SHA-256: when it
matches, nothing more is read; otherwise every record's `key` feature (its info-file path) is
compared with the info file in order. Images are not decoded.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from universal_embedding.data import registry, tfrecords
from universal_embedding.data.image_files import unescape_name
from universal_embedding.data.input_pipeline import split_files

_KEY_ONLY = {registry.PATH_KEY: tf.io.FixedLenFeature([], tf.string, default_value="")}


def read_keys(tfds_dir: str, domain: str, split: str, batch_size: int = 1024) -> list[str]:
    """The `key` feature of every record of a split, in record order (nothing else parsed)."""
    ds = tf.data.TFRecordDataset(split_files(tfds_dir, domain, split))
    ds = ds.batch(batch_size).map(lambda x: tf.io.parse_example(x, _KEY_ONLY)[registry.PATH_KEY])
    return [k.decode("utf-8", "surrogateescape") for b in ds.as_numpy_iterator() for k in b]


def converted_from(tfds_dir: str, domain: str, split: str, info_file: str) -> bool:
    """Whether the split's conversion summary names exactly this info file's content."""
    summary = tfrecords.read_summary(registry.tfrecord_prefix(tfds_dir, domain, split))
    return bool(summary) and summary.get("info_sha256") == tfrecords.file_sha256(info_file)


def check_record_keys(
    tfds_dir: str, domain: str, split: str, paths: Sequence[str], info_files_dir: str = ""
) -> None:
    """Raise naming the first row whose record key is not the info file's path of that row.

    `paths` are the info file's paths in order; with `info_files_dir` the converter's info-file
    hash is tried first. `#U`-escaped and plain spellings of a name count as the same.
    """
    if info_files_dir:
        info_file = registry.info_file_path(info_files_dir, domain, split)
        if converted_from(tfds_dir, domain, split, info_file):
            return
    keys = read_keys(tfds_dir, domain, split)
    for row, (want, found) in enumerate(zip(paths, keys, strict=False)):
        if unescape_name(want) != unescape_name(found):
            raise ValueError(
                f"Domain '{domain}', split '{split}': row {row}: the info file has {want!r} but "
                f"the TFRecords in {tfds_dir} hold {found!r}; the info file changed since "
                "conversion (reordered?). Re-convert the split from this info file "
                "(python -m universal_embedding.data.prepare) or restore the original info file."
            )
    if len(keys) != len(paths):
        raise ValueError(
            f"Domain '{domain}', split '{split}': the TFRecords in {tfds_dir} hold {len(keys)} "
            f"records but its info file lists {len(paths)}. Re-convert the split."
        )
