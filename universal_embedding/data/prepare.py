"""Convert every split of a UnED-style data dir into TFRecords (the original prepare script).

    python -m universal_embedding.data.prepare --data_dir DIR [--domains a,b] [--workers N] \
        [--skip_bad_images] [--max_image_bytes=100000000] [--allow_outside_files_dir] \
        [--max_side=N] [--processes=N]

Reads DIR/info_files/<domain>/<split>.json and DIR/images, writes
DIR/tfds/<domain>/<split>/<domain>.<split>.tfrecord[-NNNNN-of-NNNNN] with the registry's shard
counts (capped at the number of images), skipping splits whose conversion is already complete.
--max_side N stores training-split images with their long side at most N (evaluation splits
keep their full size); default 0 = off. --processes N converts N splits at once, each in a
process of its own (0 = one per core; default 1): the per-image checks are Python work, so on
small images one process keeps about one core busy.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import sys
from collections.abc import Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tqdm  # noqa: E402
from absl import flags  # noqa: E402

from universal_embedding.data import (  # noqa: E402
    custom_domains,
    image_files,
    info_files,
    registry,
    side_files,
    tfrecords,
)
from universal_embedding.errors import command  # noqa: E402


def split_is_complete(info_file: str, prefix: str, num_shards: int, max_side: int = 0) -> bool:
    """True when `prefix` holds a finished conversion of exactly this info file, shard count and
    max_side."""
    summary = tfrecords.read_summary(prefix)
    if not summary or len(summary.get("shard_records", [])) != num_shards:
        return False
    if summary.get("max_side", 0) != max_side:
        return False
    expected = [registry.shard_name(prefix, i, num_shards) for i in range(num_shards)]
    if tfrecords.shard_files(prefix) != sorted(expected):
        return False
    return summary.get("info_sha256") == tfrecords.file_sha256(info_file)


def _domains(info_dir: str, domains: Sequence[str] | None) -> list[str]:
    if domains:
        return [d.name for d in registry.parse_domains(list(domains))]
    found = [d for d in registry.domain_names() if os.path.isdir(os.path.join(info_dir, d))]
    if not found:
        raise FileNotFoundError(
            f"No domain folders under {info_dir}. Expected {info_dir}/<domain>/<split>.json "
            f"for domains {', '.join(registry.DOMAIN_NAMES)}."
        )
    return found


def prepare(
    data_dir: str,
    domains: Sequence[str] | None = None,
    workers: int = 0,
    skip_bad_images: bool = False,
    *,
    allow_outside_files_dir: bool = False,
    max_image_bytes: int = image_files.DEFAULT_MAX_IMAGE_BYTES,
    max_side: int = 0,
    processes: int = 1,
) -> None:
    """Convert all splits present under data_dir/info_files into data_dir/tfds (max_side: see
    the module docstring); `processes` > 1 converts that many splits at once, each in a
    process of its own (0 = one per core)."""
    info_dir = os.path.join(data_dir, "info_files")
    images_dir = os.path.join(data_dir, "images")
    tfds_dir = os.path.join(data_dir, "tfds")
    jobs = []
    for domain in _domains(info_dir, domains):
        splits = info_files.available_splits(info_dir, domain)
        if not splits:
            raise FileNotFoundError(
                f"No info files of domain '{domain}' under {info_dir}/{domain}."
            )
        for split in splits:
            info_file = registry.info_file_path(info_dir, domain, split)
            size = len(info_files.read_info_file(info_file))
            shards = max(1, min(registry.get_domain(domain).num_shards(split), size))
            prefix = registry.tfrecord_prefix(tfds_dir, domain, split)
            for old in side_files.move_legacy_side_files(prefix):
                print(f"{domain}/{split}: moved {old} into {side_files.META_DIR}/")
            train = split in registry.TRAIN_SPLITS
            side = max_side if train else 0
            if split_is_complete(info_file, prefix, shards, side):
                print(f"{domain}/{split}: already complete, skipped")
                continue
            job = dict(info_file=info_file, output_file=prefix, files_dir=images_dir)
            job.update(num_shards=shards, train=train, workers=workers, max_side=side)
            job.update(skip_bad_images=skip_bad_images, max_image_bytes=max_image_bytes)
            job.update(allow_outside_files_dir=allow_outside_files_dir)
            jobs.append((f"{domain}/{split}", job, size))
    for name, line in _run_jobs(jobs, processes):
        print(f"{name}: {line}")


def _convert(job: dict) -> str:
    return tfrecords.convert(**job).line()


_DONE = None  # in a worker process: the images converted by all workers (a shared counter)


def _start_worker(done) -> None:  # noqa: ANN001
    global _DONE
    _DONE = done


def _count(n: int) -> None:
    with _DONE.get_lock():
        _DONE.value += n


def _convert_counted(job: dict) -> str:
    return tfrecords.convert(**job, progress=_count).line()


def _run_jobs(jobs: list[tuple[str, dict, int]], processes: int):
    """(name, summary line) of each conversion, in order; several at once in spawned processes
    (no fork: TensorFlow's threads are running; the largest splits first; one progress bar
    over all their images) when processes != 1 and the program has a main file to spawn from."""
    processes = min(len(jobs), processes or os.cpu_count() or 1)
    main_file = getattr(sys.modules["__main__"], "__file__", None)
    if processes <= 1 or not (main_file and os.path.isfile(main_file)):
        for name, job, _ in jobs:
            yield name, _convert(job)
        return
    context = multiprocessing.get_context("spawn")
    done = context.Value("q", 0)
    pool = concurrent.futures.ProcessPoolExecutor(
        processes, mp_context=context, initializer=_start_worker, initargs=(done,)
    )
    bar = tqdm.tqdm(total=sum(size for *_, size in jobs), unit="img", desc="prepare")
    with pool, bar:
        futures = {}
        for i in sorted(range(len(jobs)), key=lambda i: -jobs[i][2]):
            futures[i] = pool.submit(_convert_counted, jobs[i][1])
        waiting = set(futures.values())
        while waiting:
            finished, waiting = concurrent.futures.wait(
                waiting, timeout=0.5, return_when=concurrent.futures.FIRST_EXCEPTION
            )
            bar.update(done.value - bar.n)
            if any(f.exception() for f in finished):
                for f in waiting:
                    f.cancel()
                break
        for i, (name, _, _) in enumerate(jobs):
            yield name, futures[i].result()


def define_flags() -> None:
    """prepare's flags (called only when run as a program)."""
    flags.DEFINE_string("data_dir", None, "Holds info_files/ and images/.", required=True)
    flags.DEFINE_string("domains", "", "Comma-separated; default: all present.")
    flags.DEFINE_integer("workers", 0, "Reader threads (0 = all cores).")
    flags.DEFINE_integer("processes", 1, "Splits converted at once, a process each (0 = cores).")
    flags.DEFINE_bool("skip_bad_images", False, "Leave out bad images (listed in a report).")
    flags.DEFINE_integer(
        "max_image_bytes", 100_000_000, "Larger files are bad images (checked before reading).", 1
    )
    flags.DEFINE_bool(
        "allow_outside_files_dir", False, "Read info-file paths leading outside DIR/images."
    )
    flags.DEFINE_integer(
        "max_side", 0, "Store training images with long side <= N (0 = off; N >= 2 x resize).", 0
    )
    flags.DEFINE_string("domains_file", "", "JSON declaring domains of your own.")


def main(argv: Sequence[str]) -> None:
    """absl main: convert --data_dir with the parsed flags."""
    image_files.hide_gpus_from_tensorflow()  # done on import too; JAX may own the GPUs
    f = flags.FLAGS
    if f.domains_file:
        custom_domains.load_domains_file(f.domains_file)
    try:
        prepare(
            f.data_dir,
            f.domains.split(",") if f.domains else None,
            f.workers,
            f.skip_bad_images,
            allow_outside_files_dir=f.allow_outside_files_dir,
            max_image_bytes=f.max_image_bytes,
            max_side=f.max_side,
            processes=f.processes,
        )
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        raise SystemExit(f"prepare failed: {e}") from e
    command.print_written([os.path.join(f.data_dir, "tfds")])


def cli() -> None:
    """The `ue-prepare` command."""
    define_flags()
    command.run(main)


if __name__ == "__main__":
    cli()
