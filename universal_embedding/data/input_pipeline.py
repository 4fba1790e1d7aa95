"""tf.data streams over UnED TFRecords yielding numpy batches: eval (info-file order, padded +
masked), folders of image files, and the pieces the train stream (train_stream.py) shares."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from universal_embedding.data import crops, image_files, preprocess, registry, tfrecords

image_files.hide_gpus_from_tensorflow()  # JAX owns the accelerators

AUTOTUNE = tf.data.AUTOTUNE


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


def file_counts(tfds_dir: str, domain: str, split: str) -> tuple[list[str], list[int]]:
    """(shard files, records per shard) of one split (from its summary when it has one)."""
    files = split_files(tfds_dir, domain, split)
    summary = tfrecords.read_summary(registry.tfrecord_prefix(tfds_dir, domain, split))
    if summary and len(summary.get("shard_records", [])) == len(files):
        return files, list(summary["shard_records"])
    return files, [tfrecords.count_records([f]) for f in files]


def num_records(tfds_dir: str, domain: str, split: str) -> int:
    """Number of records of one converted split."""
    return sum(file_counts(tfds_dir, domain, split)[1])


def check_batch(batch_size: int, process_index: int, process_count: int) -> int:
    """This process's share of a global batch (errors on a bad process index or split)."""
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"Bad process_index {process_index} for process_count {process_count}.")
    if batch_size % process_count:
        raise ValueError(
            f"batch_size {batch_size} must be divisible by the process count {process_count}."
        )
    return batch_size // process_count


def numpy_batches(ds: tf.data.Dataset, prefetch: int) -> Iterator[dict[str, np.ndarray]]:
    """The dataset's elements as numpy dicts, `prefetch` batches ahead."""
    yield from ds.prefetch(prefetch).as_numpy_iterator()


def pipeline_options(threads: int = 0) -> tf.data.Options:
    """One private thread pool of `threads` (0: every core this process may use) per pipeline,
    no intra-op threading inside it, deterministic order (exact resume), and a bounded RAM
    budget for autotuning."""
    options = tf.data.Options()
    options.deterministic = True
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    options.threading.private_threadpool_size = threads or cores or 1
    options.threading.max_intra_op_parallelism = 1
    options.autotune.ram_budget = 4 << 30
    return options


def pixels_out(pixels: tf.Tensor, normalization: str | None) -> tf.Tensor:
    """0..255 float pixels -> normalised float32, or uint8 when normalization is None (the
    model then normalises on the device: 4x less host work and host-to-device traffic)."""
    return (
        crops.to_uint8(pixels)
        if normalization is None
        else preprocess.normalize(pixels, normalization)
    )


def _padded_eval(
    items: tf.data.Dataset,
    parse: Callable[[tf.Tensor], dict[str, tf.Tensor]],
    *,
    batch_size: int,
    image_size: int,
    normalization: str | None,
    process_index: int,
    process_count: int,
    with_keys: bool = False,
    skip_errors: bool = False,
    threads: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
    """Cut each global batch of `items` into per-process slices, pad, decode, eval-transform.

    `parse(item)` gives {'image_bytes'} (+ {'key'} when with_keys); padded rows get key ''.
    With skip_errors, rows whose reading or decoding fails are left out (their keys tell which).
    Full decode, resize, center crop (crop-aware decode measured no faster here: see
    benchmarks/NOTES.md). normalization=None: uint8 images, padding rows 0.
    """
    local = check_batch(batch_size, process_index, process_count)

    def my_slice(group: tf.Tensor) -> tf.data.Dataset:
        part = group[process_index * local : (process_index + 1) * local]
        n = tf.shape(part)[0]
        part = tf.concat([part, tf.fill([local - n], "")], 0)
        return tf.data.Dataset.from_tensor_slices((part, tf.range(local) < n))

    def load(item: tf.Tensor, valid: tf.Tensor) -> dict[str, tf.Tensor]:
        def real() -> dict[str, tf.Tensor]:
            rec = parse(item)
            image = preprocess.decode(rec["image_bytes"])
            pixels = preprocess.eval_transform(image, image_size=image_size, norm="")
            image = pixels_out(pixels, normalization)
            return {"images": image, **({"keys": rec["key"]} if with_keys else {})}

        def padding() -> dict[str, tf.Tensor]:
            dtype = tf.uint8 if normalization is None else tf.float32
            image = tf.zeros([image_size, image_size, 3], dtype)
            return {"images": image, **({"keys": tf.constant("")} if with_keys else {})}

        return {**tf.cond(valid, real, padding), "mask": valid}

    ds = items.batch(batch_size).flat_map(my_slice)
    ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.ignore_errors() if skip_errors else ds
    batches = numpy_batches(ds.batch(local).with_options(pipeline_options(threads)), AUTOTUNE)
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
    normalization: str | None,
    process_index: int = 0,
    process_count: int = 1,
    with_keys: bool = False,
    threads: int = 0,
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
        threads=threads,
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
    normalization: str | None,
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
