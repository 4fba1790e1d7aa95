"""Per-backbone image normalisation statistics (docs/uned-benchmark.md §4); no TensorFlow."""

from __future__ import annotations

MEAN_STD: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "clip": (
        (0.48145466, 0.4578275, 0.40821073),
        (0.26862954, 0.26130258, 0.27577711),
    ),
    "imagenet": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    # The ImageNet channel statistics DINOv2 is trained with (facebookresearch/dinov2,
    # dinov2/data/transforms.py IMAGENET_DEFAULT_MEAN / _STD); 'imagenet' above is AugReg's 0.5.
    "imagenet_mean_std": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
# Backbone family (model_class without 'udon_') -> its normalisation; others: 'imagenet'.
FAMILY_NORMALIZATION = {
    "clip_vit_with_embedding": "clip",
    "dinov2_vit_with_embedding": "imagenet_mean_std",
}


def normalization_name(model_class: str, override: str = "") -> str:
    """'clip' for CLIP, 'imagenet_mean_std' for DINOv2, else 'imagenet' (AugReg's 0.5); a
    non-empty `override` wins."""
    if override:
        if override not in MEAN_STD:
            raise ValueError(
                f"Unknown normalization '{override}'. Valid names: {', '.join(MEAN_STD)}."
            )
        return override
    return FAMILY_NORMALIZATION.get(model_class.removeprefix("udon_"), "imagenet")


def mean_std(name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """(mean, std) RGB triples of normalisation `name`, on the [0, 1] pixel scale."""
    if name not in MEAN_STD:
        raise ValueError(f"Unknown normalization '{name}'. Valid names: {', '.join(MEAN_STD)}.")
    return MEAN_STD[name]
