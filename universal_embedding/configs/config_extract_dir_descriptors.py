"""Image-folder descriptors (`python -m universal_embedding.extract_dir_descriptors`).

`--config.base_dir=DIR` plus either `--config.train_dir=T` or `--config.train_dir=''
--config.pretrained_ckpt=PATH --config.model_class=... --config.model_type=...`.
Writes W/descriptors.npz with 'descriptors' (n x d float32) and 'paths' (relative to DIR);
`--config.descriptor_format=original`: the original's W/descriptors.json instead.
Argument string keys: `model_class` (default vit_with_embedding), `variant` (default B/16).
"""

from __future__ import annotations

import ml_collections

from universal_embedding.configs import base, config_knn_vit


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = base.parse_arg(arg, model_class="vit_with_embedding", variant="B/16")
    c = config_knn_vit.add_knn_fields(base.get_config())
    c.model_class = args.model_class
    c.model_type = args.variant
    c.base_dir = ""  # folder searched recursively for images (JPEG, PNG, ...)
    c.embedd_to_eval = "projected"  # or 'backbone_out'
    return c
