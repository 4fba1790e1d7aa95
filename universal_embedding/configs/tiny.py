"""A 1-layer, 16-wide ViT on 16x16 crops: seconds per run, for smoke tests and CI.

`--config=universal_embedding/configs/tiny.py:data_dir=DIR` trains on DIR/tfds with DIR/info_files
(e.g. `python -m universal_embedding.data.synthetic --data_dir DIR --scale 0.1` then
`python -m universal_embedding.data.prepare --data_dir DIR --domains cars,sop`).
On that data (83 images, 10 steps per epoch) the backbone is frozen for the first 3 steps.
`backbone=siglip` makes it a tiny SigLIP tower (no class token, MAP pooling) of the same size.
"""

from __future__ import annotations

import os

import ml_collections

from universal_embedding.configs import base, config_train_vit

BACKBONES = {"vit": "vit_with_embedding", "siglip": "siglip_vit_with_embedding"}


def tiny_vit(
    c: ml_collections.ConfigDict, image_size: int = 32, patch_size: int = 8
) -> ml_collections.ConfigDict:
    """Make `c`'s model the tiny ViT: 1 layer, 16 wide, 2 heads, an 8-d projection."""
    c.model_type = "Ti/16"
    c.model.hidden_size, c.model.num_heads, c.model.mlp_dim = 16, 2, 32
    c.model.num_layers, c.model.patch_size, c.model.output_dim = 1, patch_size, 8
    c.image_size = image_size
    return c


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = base.parse_arg(arg, data_dir="demo_work/data", backbone="vit")
    if args.backbone not in BACKBONES:
        raise ValueError(f"backbone={args.backbone!r}: choose one of {', '.join(BACKBONES)}.")
    data_dir = args.data_dir
    c = config_train_vit.add_train_fields(base.get_config())
    c.model_class = BACKBONES[args.backbone]
    c.dataset_name = c.knn_eval_names = "cars,sop"
    c.train_dataset_dir = c.eval_dataset_dir = os.path.join(data_dir, "tfds")
    c.info_files_dir = os.path.join(data_dir, "info_files")
    tiny_vit(c, image_size=16, patch_size=4)
    c.resize_size = 20
    c.batch_size, c.eval_batch_size, c.shuffle_buffer_size = 8, 16, 64
    c.classifier = "joint"  # one head: one train step to compile
    c.lr, c.backbone_lr_multiplier, c.frozen_epochs = 1e-2, 1.0, 0.3
    c.num_training_steps, c.checkpoint_steps, c.max_checkpoints_to_keep = 6, 2, 10
    c.log_summary_steps = 1
    c.eval_knns = ""
    c.do_final_testing = False
    return c
