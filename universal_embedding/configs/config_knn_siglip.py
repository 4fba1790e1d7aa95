"""kNN evaluation of a SigLIP embedding (`python -m universal_embedding.knn_main`).

The fields of `config_knn_vit.py`; argument string keys `variant` (`B/16` default, `L/16`,
`So400m/14`) and `res` (image size in pixels, default 224). Off the shelf, score a released
file's MAP-pooled vector: `--config.train_dir='' --config.pretrained_ckpt=FILE
--config.embedd_to_eval=backbone_out` (docs/backbones.md).
"""

from __future__ import annotations

import ml_collections

from universal_embedding.configs import base, config_knn_vit


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = base.parse_arg(arg, variant="B/16", res=224)
    c = config_knn_vit.knn_config("siglip_vit_with_embedding", f"variant={args.variant}")
    c.image_size = args.res
    return c
