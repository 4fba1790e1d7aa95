"""kNN evaluation of a CLIP ViT embedding (`python -m universal_embedding.knn_main`).

Same fields and argument string (`variant=B/16`) as `config_knn_vit.py`; only the backbone (and
so the normalisation) differs.
"""

from __future__ import annotations

import ml_collections

from universal_embedding.configs import config_knn_vit


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return config_knn_vit.knn_config("clip_vit_with_embedding", arg)
