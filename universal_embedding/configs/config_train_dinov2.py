"""Train a universal embedding from DINOv2 ViT-B/14 or L/14 (`python -m universal_embedding.main`).

The paper's recipe with the DINOv2 backbone (docs/backbones.md). Argument string keys: those of
`config_train_vit.py` (`classifier`, `sampling`) plus `variant` = `B/14` (default) | `L/14`,
`image_size` (default 224; a multiple of the patch size 14) and `registers` (default false:
the `_reg4` checkpoint when true), e.g.
`--config=universal_embedding/configs/config_train_dinov2.py:variant=L/14,image_size=224`.
The starting weights are the torch hub `.pth` files `download_models --weights=dinov2` fetches;
the checkpoint's 37x37 position grid is resized to image_size / 14 (config.model.pos_interpolation).
"""

from __future__ import annotations

import ml_collections

from universal_embedding.configs import base, config_train_vit

VARIANTS = {"B/14": "dinov2_vitb14", "L/14": "dinov2_vitl14"}
PATCH = 14


def checkpoint_path(variant: str, registers: bool) -> str:
    """data/models/dinov2/<arch>/<arch>[_reg4]_pretrain.pth (download_models' layout)."""
    arch = VARIANTS[variant]
    return f"data/models/dinov2/{arch}/{arch}{'_reg4' if registers else ''}_pretrain.pth"


def parse_dinov2_args(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """variant, image_size, registers (+ `defaults`) of an argument string, checked."""
    args = base.parse_arg(arg, variant="B/14", image_size=224, registers=False, **defaults)
    if args.variant not in VARIANTS:
        raise ValueError(f"variant={args.variant!r}: choose one of {', '.join(VARIANTS)}.")
    if args.image_size <= 0 or args.image_size % PATCH:
        raise ValueError(
            f"image_size={args.image_size}: give a positive multiple of the patch size {PATCH} "
            "(e.g. 224 or 518)."
        )
    return args


def apply_dinov2_args(c: ml_collections.ConfigDict, args: ml_collections.ConfigDict) -> None:
    """Backbone, size, resolution and starting weights of the parsed arguments."""
    c.model_class = "dinov2_vit_with_embedding"
    c.model_type = args.variant
    c.image_size = args.image_size
    c.resize_size = round(args.image_size * 8 / 7)  # 224 -> 256, as the other recipes
    c.pretrained_ckpt = checkpoint_path(args.variant, args.registers)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = config_train_vit.add_train_fields(base.get_config())
    args = parse_dinov2_args(arg, classifier=c.classifier, sampling=c.sampling_strategy)
    apply_dinov2_args(c, args)
    run = f"classifier={args.classifier},sampling={args.sampling},variant={args.variant}"
    config_train_vit.apply_run_args(c, run)
    return c
