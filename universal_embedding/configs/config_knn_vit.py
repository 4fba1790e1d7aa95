"""kNN evaluation of a ViT embedding (`python -m universal_embedding.knn_main`).

Give a training workdir (`--config.train_dir=T`: model read from `T/config.json`, weights from
its best checkpoint by default) or, with `--config.train_dir=''`, off-the-shelf weights
(`--config.pretrained_ckpt=PATH`). By default the official UnED test protocol runs (test_knn,
separate and merged index) over the 8 domains. Argument string: `variant=B/16` (default).
"""

from __future__ import annotations

import ml_collections

from universal_embedding.configs import base


def add_knn_fields(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """Fields shared by every kNN / extraction entry point (added to a base config)."""
    c.train_dir = ""  # training workdir (T/config.json + a checkpoint); '' = use pretrained_ckpt
    c.checkpoint = "best"  # 'best' | 'latest' | a step number, e.g. '7000'
    c.allow_random_init = False  # True: no weights at all (random model, e.g. a demo baseline)
    c.eval_batch_size = 256
    return c


def knn_config(model_class: str, arg: str | None) -> ml_collections.ConfigDict:
    """The kNN config of `model_class`; argument string keys: variant."""
    args = base.parse_arg(arg, variant="B/16")
    c = add_knn_fields(base.get_config())
    c.model_class = model_class
    c.model_type = args.variant

    c.eval_knns = "test_knn"  # the setups to run (train_knn, val_knn, test_knn)
    c.disabled_separate_knns = ""
    c.disabled_merged_knns = ""

    c.save_descriptors = True  # W/descriptors.npz (descriptor_format: see configs/base.py)
    c.save_json_descriptors = False  # also W/descriptors.json (the original JSON layout)
    c.save_neighbors = False  # W/neighbours.html
    # neighbours.html links thumbnails (made from the TFRecords' bytes) to originals here;
    # '' = <info_files_dir>/../images. The files are linked, never read.
    c.images_dir = ""
    c.neighbours_queries = 8  # sampled queries per domain in neighbours.html
    c.neighbours_per_page = 200  # queries per page; more go to neighbours_2.html, ...
    c.neighbours_thumb_size = 96  # thumbnail side in pixels
    return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return knn_config("vit_with_embedding", arg)
