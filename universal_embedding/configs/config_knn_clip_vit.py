"""kNN evaluation of a CLIP ViT embedding (`python -m universal_embedding.knn_main`).

Same fields as `config_knn_vit.py`; only the backbone (and so the normalisation) differs.
"""

from __future__ import annotations

import ml_collections

from universal_embedding.configs import base, config_knn_vit


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = base.parse_arg(arg)
    c = config_knn_vit.get_config(arg)
    c.experiment_name = "knn_clip_vit"
    c.model_class = "clip_vit_with_embedding"
    c.model_type = args.get("variant", "B/16")
    return c
