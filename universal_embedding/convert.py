"""Convert one UnED info file (+ its images) into TFRecord shards (`ue-convert`).

    python -m universal_embedding.convert --info_file=data/info_files/cars/train.json \
        --output_file=data/tfds/cars/train/cars.train.tfrecord --files_dir=data/images \
        --num_shards=1 --train [--workers=8] [--skip_bad_images] [--seed=0] [--max_side=0] \
        [--max_image_bytes=100000000] [--allow_outside_files_dir]

The top-level `convert_to_tfrecord_from_file.py` runs this with the same flags. Besides the
shards it writes `_meta/<name>.summary.json` (and `_meta/<name>.skipped.txt`) in their folder,
where `<output_file>*` does not reach.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _define_flags():
    from absl import flags

    flags.DEFINE_string("info_file", None, "JSON info file: [{'path': ..., 'class_id': ...}, ...].")
    flags.DEFINE_string("output_file", None, "Output prefix; shards get -NNNNN-of-NNNNN appended.")
    flags.DEFINE_string("files_dir", None, "Directory the info file's paths are relative to.")
    flags.DEFINE_integer("num_shards", 1, "Number of output shards.")
    flags.DEFINE_bool("train", False, "Training split: shuffle (seeded) before sharding.")
    flags.DEFINE_integer("workers", 0, "Threads reading and checking images (0 = all cores).")
    flags.DEFINE_bool(
        "skip_bad_images", False, "Leave out missing/undecodable images (with a report)."
    )
    flags.DEFINE_integer("seed", 0, "Shuffle seed for --train.")
    flags.DEFINE_integer(
        "max_side", 0, "Store images with long side <= N, downscaled (0 = off; training splits).", 0
    )
    flags.DEFINE_integer(
        "max_image_bytes", 100_000_000, "Larger files are bad images (checked before reading).", 1
    )
    flags.DEFINE_bool(
        "allow_outside_files_dir", False, "Read info-file paths leading outside --files_dir."
    )
    flags.mark_flags_as_required(["info_file", "output_file", "files_dir"])
    return flags.FLAGS


def convert(args) -> None:
    """Run the conversion and print its summary (a bad input ends the process with one line)."""
    from universal_embedding.data import side_files, tfrecords  # TensorFlow: off the GPUs

    try:
        summary = tfrecords.convert(
            args.info_file,
            args.output_file,
            args.files_dir,
            args.num_shards,
            train=args.train,
            workers=args.workers,
            skip_bad_images=args.skip_bad_images,
            seed=args.seed,
            allow_outside_files_dir=args.allow_outside_files_dir,
            max_image_bytes=args.max_image_bytes,
            max_side=args.max_side,
        )
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        sys.exit(f"Conversion failed: {e}")
    print(summary.line())
    if summary.skipped:
        print(f"Skipped images are listed in {side_files.skipped_path(args.output_file)}")


def cli() -> None:
    """The `ue-convert` command."""
    from universal_embedding.errors import command

    flags = _define_flags()
    command.run(lambda argv: convert(flags))


if __name__ == "__main__":
    cli()
