"""kNN evaluation of a DINOv2 embedding (`python -m universal_embedding.knn_main`).

Same fields as `config_knn_vit.py`. Argument string keys: `variant` = `B/14` (default) | `L/14`,
`image_size` (default 224) and `registers` (default false), as in `config_train_dinov2.py`.
Off the shelf (`--config.train_dir=''`) it scores the torch hub checkpoint of that variant,
with `embedd_to_eval=backbone_out` (the pretrained model has no trained projection).
"""

from __future__ import annotations

import ml_collections

from universal_embedding.configs import config_knn_vit, config_train_dinov2


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = config_train_dinov2.parse_dinov2_args(arg)
    c = config_knn_vit.knn_config("dinov2_vit_with_embedding", f"variant={args.variant}")
    config_train_dinov2.apply_dinov2_args(c, args)
    c.embedd_to_eval = "backbone_out"
    return c
