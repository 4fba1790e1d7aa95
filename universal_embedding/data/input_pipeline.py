"""tf.data streams over UnED TFRecords yielding numpy batches: train (augmented, exactly resumable)
and eval (info-file order, padded + masked), plus folders of image files."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from universal_embedding.data import image_files, preprocess, registry, tfrecords

image_files.hide_gpus_from_tensorflow()  # JAX owns the accelerators

AUTOTUNE = tf.data.AUTOTUNE
_MAX_EPOCHS = 2**62


def split_files(tfds_dir: str, domain: str, split: str) -> list[str]:
    """The finished shard files of one split, in shard order (error if there are none)."""
    prefix = registry.tfrecord_prefix(tfds_dir, domain, split)
    files = tfrecords.shard_files(prefix)
    if not files:
        raise FileNotFoundError(
            f"No TFRecords for domain '{domain}', split '{split}': expected {prefix} or "
            f"{prefix}-NNNNN-of-NNNNN. Convert the data first: "
            "python -m universal_embedding.data.prepare --data_dir <dir holding tfds/>."
        )
    return files


def _file_counts(tfds_dir: str, domain: str, split: str) -> tuple[list[str], list[int]]:
    files = split_files(tfds_dir, domain, split)
    summary = tfrecords.read_summary(registry.tfrecord_prefix(tfds_dir, domain, split))
    if summary and len(summary.get("shard_records", [])) == len(files):
        return files, list(summary["shard_records"])
    return files, [tfrecords.count_records([f]) for f in files]


def num_records(tfds_dir: str, domain: str, split: str) -> int:
    """Number of records of one converted split."""
    return sum(_file_counts(tfds_dir, domain, split)[1])


def _check_batch(batch_size: int, process_index: int, process_count: int) -> int:
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"Bad process_index {process_index} for process_count {process_count}.")
    if batch_size % process_count:
        raise ValueError(
            f"batch_size {batch_size} must be divisible by the process count {process_count}."
        )
    return batch_size // process_count


def _numpy_batches(ds: tf.data.Dataset, prefetch: int) -> Iterator[dict[str, np.ndarray]]:
    yield from ds.prefetch(prefetch).as_numpy_iterator()


def train_batches(
    tfds_dir: str,
    domain: str,
    *,
    batch_size: int,
    image_size: int,
    resize_size: int,
    normalization: str,
    seed: int,
    label_offset: int = 0,
    start_batch: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    shuffle_buffer_size: int = 10000,
) -> Iterator[dict[str, np.ndarray]]:
    """Endless augmented train batches of one domain; `start_batch=n` resumes exactly at batch n."""
    local = _check_batch(batch_size, process_index, process_count)
    files, counts = _file_counts(tfds_dir, domain, "train")
    by_record = len(files) < process_count
    if by_record:  # fewer files than processes: every process reads all, keeps every pc-th record
        mine, n = files, len(range(process_index, sum(counts), process_count))
    else:
        mine, n = files[process_index::process_count], sum(counts[process_index::process_count])
    if n == 0:
        raise ValueError(f"Process {process_index} has no train records of domain '{domain}'.")
    first = start_batch * local
    files_t = tf.constant(mine)
    seed_t = tf.constant(seed, tf.int64)

    def epoch(e: tf.Tensor) -> tf.data.Dataset:
        if by_record:
            ds = tf.data.TFRecordDataset(files_t).shard(process_count, process_index)
        else:
            keys = tf.random.stateless_uniform([len(mine)], seed=tf.stack([seed_t, e]))
            ds = tf.data.Dataset.from_tensor_slices(tf.gather(files_t, tf.argsort(keys)))
            ds = ds.interleave(
                tf.data.TFRecordDataset,
                cycle_length=min(len(mine), 16),
                num_parallel_calls=AUTOTUNE,
                deterministic=True,
            )
        return ds.shuffle(shuffle_buffer_size, seed=seed_t * 1_000_003 + e)

    records = tf.data.Dataset.range(first // n, _MAX_EPOCHS).flat_map(epoch).skip(first % n)
    ds = tf.data.Dataset.zip(tf.data.Dataset.counter(first), records)

    def load(counter: tf.Tensor, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        rec = preprocess.parse_record(serialized)
        aug_seed = tf.stack([seed_t, counter * process_count + process_index])
        image = preprocess.train_transform(
            preprocess.decode(rec["image_bytes"]),
            aug_seed,
            image_size=image_size,
            resize_size=resize_size,
            norm=normalization,
        )
        return {"images": image, "labels": tf.cast(rec["label"] + label_offset, tf.int32)}

    ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    # A small fixed prefetch: training keeps one stream per domain open, and batches are large.
    return _numpy_batches(ds.batch(local, drop_remainder=True), prefetch=2)


def _padded_eval(
    items: tf.data.Dataset,
    parse: Callable[[tf.Tensor], dict[str, tf.Tensor]],
    *,
    batch_size: int,
    image_size: int,
    normalization: str,
    process_index: int,
    process_count: int,
    with_keys: bool = False,
    skip_errors: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Cut each global batch of `items` into per-process slices, pad, decode, eval-transform.

    `parse(item)` gives {'image_bytes'} (+ {'key'} when with_keys); padded rows get key ''.
    With skip_errors, rows whose reading or decoding fails are left out (their keys tell which).
    """
    local = _check_batch(batch_size, process_index, process_count)

    def my_slice(group: tf.Tensor) -> tf.data.Dataset:
        part = group[process_index * local : (process_index + 1) * local]
        n = tf.shape(part)[0]
        part = tf.concat([part, tf.fill([local - n], "")], 0)
        return tf.data.Dataset.from_tensor_slices((part, tf.range(local) < n))

    def load(item: tf.Tensor, valid: tf.Tensor) -> dict[str, tf.Tensor]:
        def real() -> dict[str, tf.Tensor]:
            rec = parse(item)
            image = preprocess.decode(rec["image_bytes"])
            image = preprocess.eval_transform(image, image_size=image_size, norm=normalization)
            return {"images": image, **({"keys": rec["key"]} if with_keys else {})}

        def padding() -> dict[str, tf.Tensor]:
            image = tf.zeros([image_size, image_size, 3], tf.float32)
            return {"images": image, **({"keys": tf.constant("")} if with_keys else {})}

        return {**tf.cond(valid, real, padding), "mask": valid}

    ds = items.batch(batch_size).flat_map(my_slice)
    ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors() if skip_errors else ds
    batches = _numpy_batches(ds.batch(local), prefetch=AUTOTUNE)
    return _decode_keys(batches) if with_keys else batches


def _decode_keys(batches: Iterator[dict[str, np.ndarray]]) -> Iterator[dict[str, np.ndarray]]:
    """Record keys bytes -> str (numpy unicode array; padded rows ''; bytes that are not UTF-8,
    only possible in file names, as surrogate escapes like os.fsdecode)."""
    for b in batches:
        b["keys"] = np.array([k.decode("utf-8", "surrogateescape") for k in b["keys"]], dtype=str)
        yield b


def eval_batches(
    tfds_dir: str,
    domain: str,
    split: str,
    *,
    batch_size: int,
    image_size: int,
    normalization: str,
    process_index: int = 0,
    process_count: int = 1,
    with_keys: bool = False,
) -> Iterator[dict[str, np.ndarray]]:
    """Eval batches of one split in record order: {'images', 'mask'}, last batch padded.

    Record order is info-file order for evaluation splits; train splits are stored shuffled,
    so ask for `with_keys=True` to also get 'keys' (str [local], each row's relative path,
    '' on padding) and put the rows in info-file order by key (knn/extract.py does).
    """
    files = split_files(tfds_dir, domain, split)
    return _padded_eval(
        tf.data.TFRecordDataset(files),
        preprocess.parse_record,
        batch_size=batch_size,
        image_size=image_size,
        normalization=normalization,
        process_index=process_index,
        process_count=process_count,
        with_keys=with_keys,
    )


def _read_compatible(path: bytes, max_bytes: int, failures: dict[str, str]) -> bytes:
    try:
        raw = image_files.read_image_file(path, max_bytes)
        return image_files.fast_compatible_bytes(raw)
    except (OSError, image_files.BadImageError) as e:
        failures[os.fsdecode(path)] = str(e)
        raise


def folder_batches(
    base_dir: str,
    rel_paths: Sequence[str],
    *,
    batch_size: int,
    image_size: int,
    normalization: str,
    max_bytes: int = image_files.DEFAULT_MAX_IMAGE_BYTES,
    skipped: list[tuple[str, str]] | None = None,
) -> Iterator[dict]:
    """Eval-transformed batches of the files base_dir/rel_paths[i], in order, padded + masked.

    Each file is read once (at most max_bytes). A file that cannot be read or decoded raises,
    or, given a `skipped` list, is left out and appended to it as (rel_path, reason) once the
    batches are consumed (so rows are rel_paths minus the skipped ones, in order).
    """
    full = [os.path.join(os.fsencode(base_dir), os.fsencode(p)) for p in rel_paths]
    failures: dict[str, str] = {}

    def read(p: tf.Tensor) -> tf.Tensor:
        raw = tf.numpy_function(
            lambda path: _read_compatible(path, max_bytes, failures), [p], tf.string, stateful=False
        )
        return {"image_bytes": tf.ensure_shape(raw, []), "key": p}

    batches = _padded_eval(
        tf.data.Dataset.from_tensor_slices(tf.constant(full, tf.string)),
        read,
        batch_size=batch_size,
        image_size=image_size,
        normalization=normalization,
        process_index=0,
        process_count=1,
        with_keys=skipped is not None,
        skip_errors=skipped is not None,
    )
    if skipped is None:
        return batches
    full_names = [os.fsdecode(p) for p in full]
    return _note_skipped(batches, batch_size, rel_paths, full_names, failures, skipped)


def _note_skipped(
    batches: Iterator[dict],
    batch_size: int,
    rel_paths: Sequence[str],
    full: list[str],
    failures: dict[str, str],
    skipped: list[tuple[str, str]],
) -> Iterator[dict]:
    """Pass batches on without their keys, the last one padded back to batch_size (rows left
    out make it short); the files whose rows never came go to `skipped`."""
    pos = 0

    def skip_until(key: str | None) -> None:
        nonlocal pos
        while pos < len(full) and full[pos] != key:
            reason = failures.get(full[pos], "TensorFlow could not decode it")
            skipped.append((rel_paths[pos], reason))
            pos += 1

    for b in batches:
        for key, valid in zip(b.pop("keys"), b["mask"], strict=True):
            if valid:
                skip_until(str(key))
                pos += 1
        if short := batch_size - len(b["mask"]):
            b = {
                k: np.concatenate([v, np.zeros((short, *v.shape[1:]), v.dtype)])
                for k, v in b.items()
            }
        yield b
    skip_until(None)


def find_images(
    base_dir: str, max_bytes: int = image_files.DEFAULT_MAX_IMAGE_BYTES
) -> tuple[list[str], list[tuple[str, str]]]:
    """(sorted relative paths of files that look like images, [(path, reason)] of others);
    see image_files.scan_folder: names, sizes and headers are checked, files not read."""
    return image_files.scan_folder(base_dir, max_bytes)
