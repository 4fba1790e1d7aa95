"""Train a universal embedding from OpenAI CLIP ViT-B/16 (`python -m universal_embedding.main`).

The paper's recipe (docs/uned-benchmark.md §5). Runs are picked with an argument string, e.g.
`--config=universal_embedding/configs/config_train_clip_vit.py:classifier=separate,sampling=round_robin`
(USCRR); the keys are those of `config_train_vit.py`.
"""

from __future__ import annotations

import ml_collections

from universal_embedding.configs import base, config_train_vit


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = config_train_vit.add_train_fields(base.get_config())
    c.model_class = "clip_vit_with_embedding"
    c.model_type = "B/16"
    config_train_vit.apply_run_args(c, arg)
    if c.model_type != "B/16":
        raise ValueError(f"variant={c.model_type!r}: only CLIP B/16 weights are supported.")
    c.pretrained_ckpt = "data/models/clip/vit_b16.npy"
    return c
