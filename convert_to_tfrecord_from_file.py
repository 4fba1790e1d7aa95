"""Convert one UnED info file (+ its images) into TFRecord shards: universal_embedding/convert.py.

    python convert_to_tfrecord_from_file.py --info_file=data/info_files/cars/train.json \
        --output_file=data/tfds/cars/train/cars.train.tfrecord --files_dir=data/images \
        --num_shards=1 --train [--workers=8] [--skip_bad_images] [--seed=0] [--max_side=0] \
        [--max_image_bytes=100000000] [--allow_outside_files_dir]

Same as `python -m universal_embedding.convert` or the `ue-convert` command.
"""

from universal_embedding.convert import cli

if __name__ == "__main__":
    cli()
