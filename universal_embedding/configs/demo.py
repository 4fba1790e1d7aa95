"""The embedded default: a tiny ViT trained from scratch on the synthetic mini-UnED (2 CPU cores).

`make demo` (universal_embedding/demo.py) writes the data under <workdir>/data and trains with
this config; it also works alone:
`python -m universal_embedding.main --config=universal_embedding/configs/demo.py --workdir=W`
with the data in demo_work/data (or --config.{train_dataset_dir,eval_dataset_dir,info_files_dir}).
Argument string: `data_dir=DIR` (default demo_work/data), `dtype=bfloat16` (default float32),
`method=udon` (default `baseline`): the same tiny ViT, data and steps trained with UDON
(per-domain teachers distilled into the 64-d student, dynamic sampler updated every 100 steps).
"""

from __future__ import annotations

import os

import ml_collections

from universal_embedding.configs import base, config_train_udon, config_train_vit

METHODS = ("baseline", "udon")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = base.parse_arg(arg, data_dir="demo_work/data", dtype="float32", method="baseline")
    data_dir = args.data_dir
    c = config_train_vit.add_train_fields(base.get_config())
    c.train_dataset_dir = os.path.join(data_dir, "tfds")
    c.eval_dataset_dir = os.path.join(data_dir, "tfds")
    c.info_files_dir = os.path.join(data_dir, "info_files")

    # A tiny ViT from random init: 32x32 images, 4x4 patches (64 tokens), 64 wide.
    c.model_class = "vit_with_embedding"
    c.model_type = "Ti/16"
    c.model.hidden_size = 64
    c.model.num_heads = 4
    c.model.mlp_dim = 128
    c.model.num_layers = 3
    c.model.patch_size = 4
    c.model.output_dim = 64
    c.model.dtype = args.dtype
    c.pretrained_ckpt = ""
    c.image_size = 32
    c.resize_size = 36
    c.shuffle_buffer_size = 1000

    # Random init: no frozen phase, the backbone learns at the heads' rate.
    c.batch_size = 64
    c.eval_batch_size = 128
    c.sampling_strategy = "round_robin"
    c.classifier = "joint"  # one head over all 320 classes (vs separate: docs/training.md)
    c.lr = 2e-3
    c.backbone_lr_multiplier = 1.0
    c.frozen_epochs = 0.0
    c.lr_schedule = "warmup_cosine"
    c.warmup_steps = 50
    c.num_epochs = 15.0
    c.log_summary_steps = 25
    c.log_eval_steps = 250  # every 5 epochs
    c.checkpoint_steps = 50  # about one epoch: a kill loses at most a few seconds
    c.max_checkpoints_to_keep = 2
    c.knn_search = "auto"
    if args.method not in METHODS:
        raise ValueError(f"method={args.method!r}: choose one of {', '.join(METHODS)}.")
    if args.method == "udon":
        udon_demo(c)
    return c


def udon_demo(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """The demo run as UDON: same backbone, data, steps and learning rates."""
    config_train_udon.add_udon_fields(c)
    c.model_class = "udon_vit_with_embedding"
    c.update_sampler_every_steps = 100  # 7 updates in the 750 steps
    return c
