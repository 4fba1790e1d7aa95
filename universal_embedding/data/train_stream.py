"""The training stream: augmented, exactly resumable batches of one domain or of a domain
schedule (one pipeline serving every domain), from UnED TFRecords."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from universal_embedding.data import crops, preprocess
from universal_embedding.data.input_pipeline import (
    AUTOTUNE,
    check_batch,
    file_counts,
    numpy_batches,
    pipeline_options,
    pixels_out,
)

_MAX_EPOCHS = 2**62


def _records(
    tfds_dir: str, domain: str, *, local: int, seed: int, start_batch: int,
    process_index: int, process_count: int, shuffle_buffer_size: int,
) -> tf.data.Dataset:  # fmt: skip
    """Endless (record counter, serialized record) of this process's share of one domain's train
    split, reshuffled each epoch, starting at record start_batch * local."""
    files, counts = file_counts(tfds_dir, domain, "train")
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
    return tf.data.Dataset.zip(tf.data.Dataset.counter(first), records)


def _train_loader(
    seeds: Sequence[int], label_offsets: Sequence[int], *, image_size: int, resize_size: int,
    normalization: str | None, process_index: int, process_count: int, reduced_decode: bool,
) -> Callable[..., dict[str, tf.Tensor]]:  # fmt: skip
    """map fn (domain index, counter, serialized) -> {'images', 'labels'}; the augmentation seed
    is (domain seed, counter * process_count + process_index)."""
    seeds_t = tf.constant(list(seeds), tf.int64)
    offsets_t = tf.constant(list(label_offsets), tf.int64)

    def load(d: tf.Tensor, counter: tf.Tensor, serialized: tf.Tensor) -> dict[str, tf.Tensor]:
        rec = preprocess.parse_record(serialized)
        aug_seed = tf.stack([seeds_t[d], counter * process_count + process_index])
        pixels = crops.train_crop(
            rec["image_bytes"], aug_seed, image_size=image_size, resize_size=resize_size,
            reduce=reduced_decode,
        )  # fmt: skip
        labels = tf.cast(rec["label"] + offsets_t[d], tf.int32)
        return {"images": pixels_out(pixels, normalization), "labels": labels}

    return load


def schedule_batches(
    tfds_dir: str,
    domains: Sequence[str],
    schedule: Sequence[int] | None,
    *,
    batch_size: int,
    image_size: int,
    resize_size: int,
    normalization: str | None,
    seeds: Sequence[int],
    label_offsets: Sequence[int] | None = None,
    start_batches: Sequence[int] | None = None,
    process_index: int = 0,
    process_count: int = 1,
    shuffle_buffer_size: int = 10000,
    reduced_decode: bool = False,
    threads: int = 0,
    prefetch: int = 2,
) -> Iterator[dict[str, np.ndarray]]:
    """One pipeline serving every domain: batch k comes from domains[schedule[k]] (one domain:
    endless, the schedule is not needed).

    Equal, batch for batch, to `train_batches` of each domain (seed seeds[i], label offset,
    start batch start_batches[i]) taken in schedule order; one thread pool and one prefetch
    buffer instead of one per domain. normalization=None: uint8 images (see pixels_out).
    reduced_decode: decode large JPEGs at reduced size (data/crops.py).
    """
    local = check_batch(batch_size, process_index, process_count)
    num = len(domains)
    starts = list(start_batches) if start_batches is not None else [0] * num
    offsets = list(label_offsets) if label_offsets is not None else [0] * num
    streams = [
        _records(tfds_dir, domain, local=local, seed=seeds[i], start_batch=starts[i],
                 process_index=process_index, process_count=process_count,
                 shuffle_buffer_size=shuffle_buffer_size).map(
            lambda c, r, i=i: (tf.constant(i, tf.int64), c, r)
        )
        for i, domain in enumerate(domains)
    ]  # fmt: skip
    if num == 1:
        ds = streams[0]
    elif schedule is None:
        raise ValueError(f"A schedule is needed to serve {num} domains.")
    else:
        choice = tf.data.Dataset.from_tensor_slices(np.asarray(schedule, np.int64))
        choice = choice.flat_map(lambda d: tf.data.Dataset.from_tensors(d).repeat(local))
        ds = tf.data.Dataset.choose_from_datasets(streams, choice)
    load = _train_loader(
        seeds, offsets, image_size=image_size, resize_size=resize_size,
        normalization=normalization, process_index=process_index,
        process_count=process_count, reduced_decode=reduced_decode,
    )  # fmt: skip
    ds = ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True)
    ds = ds.batch(local, drop_remainder=True).with_options(pipeline_options(threads))
    return numpy_batches(ds, prefetch=prefetch)


def train_batches(
    tfds_dir: str,
    domain: str,
    *,
    batch_size: int,
    image_size: int,
    resize_size: int,
    normalization: str | None,
    seed: int,
    label_offset: int = 0,
    start_batch: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    shuffle_buffer_size: int = 10000,
    reduced_decode: bool = False,
    threads: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
    """Endless augmented train batches of one domain; `start_batch=n` resumes exactly at batch n.

    normalization=None gives uint8 images; reduced_decode as in `schedule_batches`.
    """
    return schedule_batches(
        tfds_dir, [domain], None, batch_size=batch_size,
        image_size=image_size, resize_size=resize_size, normalization=normalization,
        seeds=[seed], label_offsets=[label_offset], start_batches=[start_batch],
        process_index=process_index, process_count=process_count,
        shuffle_buffer_size=shuffle_buffer_size, reduced_decode=reduced_decode,
        threads=threads,
    )  # fmt: skip
