"""Convert one info-file split into TFRecord shards (temp names, count check, no leftovers)."""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
import re
import socket
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import tensorflow as tf
import tqdm

from universal_embedding.data import decode_check, image_files, info_files, registry
from universal_embedding.data.side_files import (
    SKIPPED_SUFFIX,
    SUMMARY_SUFFIX,
    skipped_path,
    summary_path,
)


@dataclasses.dataclass
class ConvertSummary:
    """What one conversion did."""

    output_file: str
    written: int
    skipped: list[tuple[str, str]]
    shard_records: list[int]
    seconds: float

    def line(self) -> str:
        return (
            f"{self.output_file}: wrote {self.written} records in {len(self.shard_records)} "
            f"shard(s), skipped {len(self.skipped)}, {self.seconds:.1f} s"
        )


def make_example(image_bytes: bytes, labels: Sequence[int], key: str) -> bytes:
    """One serialized tf.train.Example with UnED's record keys."""
    feature = {
        registry.IMAGE_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_bytes])),
        registry.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=list(labels))),
        registry.PATH_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[key.encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def shard_files(prefix: str) -> list[str]:
    """Finished shard files of `prefix` (the prefix itself or `-NNNNN-of-NNNNN`), sorted."""
    folder, base = os.path.split(prefix)
    if not os.path.isdir(folder or "."):
        return []
    pattern = re.compile(re.escape(base) + r"(-\d{5}-of-\d{5})?$")
    return sorted(os.path.join(folder, n) for n in os.listdir(folder or ".") if pattern.match(n))


def count_records(files: Iterable[str]) -> int:
    """Number of records in TFRecord files, from their length headers (no TensorFlow, no decode)."""
    total = 0
    for path in files:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            pos = 0
            while pos < size:
                header = f.read(8)
                if len(header) < 8:
                    raise ValueError(f"{path}: truncated TFRecord header at byte {pos}.")
                length = struct.unpack("<Q", header)[0]
                pos += 16 + length  # length, its crc, data, data crc
                if pos > size:
                    raise ValueError(f"{path}: truncated TFRecord (record ends past end of file).")
                f.seek(pos)
                total += 1
    return total


def read_summary(output_file: str) -> dict | None:
    """The summary of finished shards (_meta/, else an earlier version's), or None."""
    path = summary_path(output_file)
    if not os.path.isfile(path):
        path = output_file + SUMMARY_SUFFIX  # written by earlier versions
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def file_sha256(path: str) -> str:
    """Hex SHA-256 of a file (identifies the info file a split was converted from)."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _ordered_map(fn: Callable, items: Sequence, workers: int) -> Iterator:
    """fn over items with a thread pool, results in order, at most a bounded number in flight."""
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        pending: collections.deque = collections.deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 8 * max(1, workers):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def host_tag() -> str:
    """This machine's name as it appears in temp shard names (letters, digits, '.', '_')."""
    return re.sub(r"[^A-Za-z0-9._]", "_", socket.gethostname()) or "host"


def _temp_name(final: str) -> str:
    folder, base = os.path.split(final)
    return os.path.join(folder, f".{base}.tmp-{host_tag()}-{os.getpid()}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_temps(output_file: str) -> list[str]:
    """Delete temp shards of `output_file` left by conversions killed on this machine.

    Only names of our pattern count: `.<base>[-NNNNN-of-NNNNN].tmp-<host>-<pid>` with this
    host and a pid that is no longer running (or the older `.tmp-<pid>` spelling, same rule).
    """
    folder, base = os.path.split(output_file)
    pattern = re.compile(
        r"\."
        + re.escape(base)
        + r"(-\d{5}-of-\d{5})?\.tmp-(?:(?P<host>[A-Za-z0-9._]+)-)?(?P<pid>\d+)"
    )
    removed = []
    for name in os.listdir(folder or "."):
        m = pattern.fullmatch(name)
        if not m or m["host"] not in (None, host_tag()) or _pid_alive(int(m["pid"])):
            continue
        os.remove(os.path.join(folder, name))
        removed.append(name)
    if removed:
        logging.warning("Removed %d temp shard(s) of killed conversions: %s", len(removed), removed)
    return removed


def _outside_error(info_file: str, files_dir: str, bad: list[tuple[int, str]]) -> ValueError:
    shown = ", ".join(f"entry {i} {p!r}" for i, p in bad[:10])
    more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
    return ValueError(
        f"Info file {info_file}: {len(bad)} path(s) lead outside --files_dir={files_dir} "
        f"({shown}{more}); nothing was read. Fix the paths, or pass --allow_outside_files_dir "
        "if the info file is trusted."
    )


def _remove(paths: Iterable[str]) -> None:
    for p in paths:
        if os.path.exists(p):
            os.remove(p)


def _bad_images_error(info_file: str, bad: list[tuple[str, str]]) -> ValueError:
    lines = "\n".join(f"  {p}: {why}" for p, why in bad)
    return ValueError(
        f"{len(bad)} bad image(s) in {info_file}; nothing was written:\n{lines}\n"
        "Fix or restore these files, or rerun with --skip_bad_images to leave them out."
    )


def convert(
    info_file: str,
    output_file: str,
    files_dir: str,
    num_shards: int = 1,
    *,
    train: bool = False,
    workers: int = 0,
    skip_bad_images: bool = False,
    seed: int = 0,
    progress: bool | Callable[[int], None] = True,
    allow_outside_files_dir: bool = False,
    max_image_bytes: int = image_files.DEFAULT_MAX_IMAGE_BYTES,
    max_side: int = 0,
) -> ConvertSummary:
    """Write the images of `info_file` as TFRecord shards `output_file[-NNNNN-of-NNNNN]`.

    Train splits are shuffled with `seed`; others keep info-file order. Shards are written under
    temporary names, record counts checked, and only then renamed; on any failure nothing is left
    (temp shards of a killed run are removed by the next run). Paths leading outside files_dir
    are refused unless `allow_outside_files_dir`; images over `max_image_bytes` are bad images.
    max_side > 0: images whose long side is larger are stored downscaled to it
    (image_files.downscaled_bytes).
    """
    start = time.time()
    if num_shards < 1:
        raise ValueError(f"num_shards must be >= 1, got {num_shards}.")
    if max_side < 0:
        raise ValueError(f"max_side must be >= 0 (0 = keep every image's size), got {max_side}.")
    entries = info_files.read_info_file(info_file)
    outside = image_files.outside_dir(files_dir, [e["path"] for e in entries])
    if outside and not allow_outside_files_dir:
        raise _outside_error(info_file, files_dir, outside)
    repeated = image_files.repeated_paths(entries)
    if repeated:
        i, j, path = repeated[0]
        raise ValueError(
            f"Info file {info_file}: {len(repeated)} path(s) listed twice (first: {path!r} as "
            f"entry {i}, class {entries[i]['class_id']}, and entry {j}, class "
            f"{entries[j]['class_id']}); nothing was read. List each image once (several "
            "labels: a class_id list)."
        )
    order = (
        np.random.default_rng(seed).permutation(len(entries)) if train else np.arange(len(entries))
    )
    finals = [registry.shard_name(output_file, i, num_shards) for i in range(num_shards)]
    temps = [_temp_name(f) for f in finals]
    os.makedirs(os.path.dirname(output_file) or ".", exist_ok=True)
    remove_stale_temps(output_file)
    workers = workers or min(32, os.cpu_count() or 1)
    bad: list[tuple[str, str]] = []
    counts = [0] * num_shards
    writers = [tf.io.TFRecordWriter(t) for t in temps]
    try:

        def load(i: int) -> tuple[bytes | None, str]:
            return _load(files_dir, entries[i]["path"], max_image_bytes, max_side)

        results = decode_check.checked(_ordered_map(load, order, workers))
        if callable(progress):
            results = _counted(results, progress)
        bar = tqdm.tqdm(
            results,
            total=len(order),
            desc=os.path.basename(output_file),
            disable=progress is not True,
            unit="img",
        )
        for pos, (i, (data, reason)) in enumerate(zip(order, bar, strict=True)):
            entry = entries[i]
            if data is None:
                bad.append((entry["path"], reason))
                continue
            if bad and not skip_bad_images:
                continue  # keep scanning to list every bad file, but stop writing
            shard = pos * num_shards // len(order)
            labels = info_files.label_tuple(entry["class_id"])
            writers[shard].write(make_example(data, labels, entry["path"]))
            counts[shard] += 1
        for w in writers:
            w.close()
        if bad and not skip_bad_images:
            raise _bad_images_error(info_file, bad)
        expected = len(entries) - len(bad)
        found = [count_records([t]) for t in temps]
        if found != counts or sum(found) != expected:
            raise RuntimeError(
                f"Record count check failed for {output_file}: expected {expected} records "
                f"({len(entries)} info entries - {len(bad)} skipped), shards hold {found}."
            )
    except BaseException:
        for w in writers:
            w.close()
        _remove(temps)
        raise
    # The summary's absence marks the split unfinished until done; earlier versions' side files
    # beside the shards go for good.
    _remove(
        [summary_path(output_file), *(output_file + x for x in (SUMMARY_SUFFIX, SKIPPED_SUFFIX))]
    )
    _remove(set(shard_files(output_file)) - set(finals))  # stale shards of another shard count
    for t, f in zip(temps, finals, strict=True):
        os.replace(t, f)
    if bad and not train:
        logging.warning(
            "%d image(s) of evaluation split %s were skipped: its records no longer line up one "
            "to one with the info file, so descriptors and labels will not match.",
            len(bad),
            info_file,
        )
    summary = ConvertSummary(output_file, sum(counts), bad, counts, time.time() - start)
    _write_side_files(summary, info_file, len(entries), max_side)
    return summary


def _counted(items: Iterable, report: Callable[[int], None], every: int = 256) -> Iterator:
    """The items, calling report(n) after every `every` of them (and for the rest at the end)."""
    n = 0
    for item in items:
        yield item
        n += 1
        if n == every:
            report(n)
            n = 0
    if n:
        report(n)


def _load(files_dir: str, rel_path: str, max_bytes: int, max_side: int) -> tuple[bytes | None, str]:
    data, reason = image_files.load_image_bytes(files_dir, rel_path, max_bytes, test_decode=False)
    if data is None or not max_side:
        return data, reason
    try:
        return image_files.downscaled_bytes(data, max_side), ""
    except image_files.BadImageError as e:
        return None, str(e)


def _write_side_files(
    summary: ConvertSummary, info_file: str, num_entries: int, max_side: int = 0
) -> None:
    os.makedirs(os.path.dirname(summary_path(summary.output_file)), exist_ok=True)
    skipped = skipped_path(summary.output_file)
    _remove([skipped])
    if summary.skipped:
        with open(skipped, "w", encoding="utf-8") as f:
            f.writelines(f"{p}\t{why}\n" for p, why in summary.skipped)
    meta = {
        "info_file": os.path.abspath(info_file),
        "info_sha256": file_sha256(info_file),
        "info_entries": num_entries,
        "num_records": summary.written,
        "num_skipped": len(summary.skipped),
        "shard_records": summary.shard_records,
        "max_side": max_side,
    }
    with open(summary_path(summary.output_file), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
