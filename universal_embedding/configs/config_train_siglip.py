"""Train a universal embedding from a SigLIP 2 image tower (`python -m universal_embedding.main`).

The UnED recipe of `config_train_vit.py` on a SigLIP 2 backbone (no class token; the embedding
is the MAP-pooled vector, docs/backbones.md). Argument string keys: `classifier`, `sampling`
(as `config_train_vit.py`), `variant` (`B/16` default, `L/16`, `So400m/14`) and `res` (the
training resolution in pixels, an int: 224 default or 256), e.g.
`--config=universal_embedding/configs/config_train_siglip.py:variant=L/16,res=256`. The starting
weights are big_vision's SigLIP 2 `.npz` of that size and resolution
(`python -m universal_embedding.download_models --weights=siglip2` fetches them); set
`--config.model.remat=True` to trade compute for memory at L and So400m size.
"""

from __future__ import annotations

import ml_collections

from universal_embedding.configs import base, config_train_vit

# (variant, resolution) -> the released big_vision file (siglip2_<variant>_<res>.npz, as
# big_vision's SigLIP 2 demo colab names them): the fixed-resolution sizes this family covers.
SIGLIP2_CHECKPOINTS = {
    ("B/16", 224): "siglip2_b16_224.npz",
    ("B/16", 256): "siglip2_b16_256.npz",
    ("L/16", 256): "siglip2_l16_256.npz",
    ("So400m/14", 224): "siglip2_so400m14_224.npz",
}


def checkpoint_path(variant: str, res: int) -> str:
    """data/models/siglip2/<file> of (variant, res); a pair without a release raises."""
    if (variant, res) not in SIGLIP2_CHECKPOINTS:
        valid = ", ".join(f"variant={v},res={r}" for v, r in SIGLIP2_CHECKPOINTS)
        raise ValueError(f"No SigLIP 2 release for variant={variant},res={res}; choose: {valid}.")
    return f"data/models/siglip2/{SIGLIP2_CHECKPOINTS[(variant, res)]}"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = config_train_vit.add_train_fields(base.get_config())
    args = base.parse_arg(
        arg, classifier=c.classifier, sampling=c.sampling_strategy, variant="B/16", res=224
    )
    c.model_class = "siglip_vit_with_embedding"
    run = f"classifier={args.classifier},sampling={args.sampling},variant={args.variant}"
    config_train_vit.apply_run_args(c, run)
    c.pretrained_ckpt = checkpoint_path(args.variant, args.res)
    c.image_size = args.res
    c.resize_size = args.res * 8 // 7  # the base config's 224 -> 256 ratio (256 -> 292)
    return c
