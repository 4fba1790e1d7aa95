"""Train a universal embedding from OpenAI CLIP ViT-B/16 (`python -m universal_embedding.main`).

The paper's recipe (docs/uned-benchmark.md §5). Runs are picked with an argument string, e.g.
`--config=universal_embedding/configs/config_train_clip_vit.py:classifier=separate,sampling=round_robin`
(USCRR); the keys are those of `config_train_vit.py`; `variant=L/14` starts from OpenAI's
ViT-L/14 TorchScript file `ViT-L-14.pt` (read for its tensors only, nothing in it runs).
"""

from __future__ import annotations

import ml_collections

from universal_embedding.configs import base, config_train_vit

# Starting weights per variant: the UnED release's vit_b16.npy; OpenAI's ViT-L-14.pt (the file
# openai/CLIP's clip.py downloads for "ViT-L/14", kept under its own name).
CLIP_CHECKPOINTS = {"B/16": "data/models/clip/vit_b16.npy", "L/14": "data/models/clip/ViT-L-14.pt"}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = config_train_vit.add_train_fields(base.get_config())
    c.model_class = "clip_vit_with_embedding"
    c.model_type = "B/16"
    config_train_vit.apply_run_args(c, arg)
    if c.model_type not in CLIP_CHECKPOINTS:
        raise ValueError(
            f"variant={c.model_type!r}: CLIP weights are known for {', '.join(CLIP_CHECKPOINTS)}."
        )
    c.pretrained_ckpt = CLIP_CHECKPOINTS[c.model_type]
    return c
