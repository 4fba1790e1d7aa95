"""Convert one UnED info file (+ its images) into TFRecord shards.

    python convert_to_tfrecord_from_file.py --info_file=data/info_files/cars/train.json \
        --output_file=data/tfds/cars/train/cars.train.tfrecord --files_dir=data/images \
        --num_shards=1 --train [--workers=8] [--skip_bad_images] [--seed=0] \
        [--max_image_bytes=100000000] [--allow_outside_files_dir]
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from universal_embedding import errors  # noqa: E402

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The original converter's flags (called only when run as a program)."""
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
        "max_image_bytes", 100_000_000, "Larger files are bad images (checked before reading).", 1
    )
    flags.DEFINE_bool(
        "allow_outside_files_dir", False, "Read info-file paths leading outside --files_dir."
    )
    flags.mark_flags_as_required(["info_file", "output_file", "files_dir"])


def main(argv: list[str]) -> None:
    """Run the conversion and print its summary."""
    del argv
    from universal_embedding.data import image_files, tfrecords

    image_files.hide_gpus_from_tensorflow()  # done on import too; JAX may own the GPUs

    try:
        summary = tfrecords.convert(
            FLAGS.info_file,
            FLAGS.output_file,
            FLAGS.files_dir,
            FLAGS.num_shards,
            train=FLAGS.train,
            workers=FLAGS.workers,
            skip_bad_images=FLAGS.skip_bad_images,
            seed=FLAGS.seed,
            allow_outside_files_dir=FLAGS.allow_outside_files_dir,
            max_image_bytes=FLAGS.max_image_bytes,
        )
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        sys.exit(f"Conversion failed: {e}")
    print(summary.line())
    if summary.skipped:
        print(f"Skipped images are listed in {FLAGS.output_file}{tfrecords.SKIPPED_SUFFIX}")


if __name__ == "__main__":
    define_flags()
    errors.define_verbose_flag()
    app.run(errors.one_line_errors(main))
