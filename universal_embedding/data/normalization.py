"""Per-backbone image normalisation statistics (docs/uned-benchmark.md §4); no TensorFlow."""

from __future__ import annotations

MEAN_STD: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "clip": (
        (0.48145466, 0.4578275, 0.40821073),
        (0.26862954, 0.26130258, 0.27577711),
    ),
    "imagenet": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


def normalization_name(model_class: str, override: str = "") -> str:
    """'clip' for CLIP backbones, else 'imagenet' (AugReg); a non-empty `override` wins."""
    if override:
        if override not in MEAN_STD:
            raise ValueError(
                f"Unknown normalization '{override}'. Valid names: {', '.join(MEAN_STD)}."
            )
        return override
    return "clip" if model_class.removeprefix("udon_").startswith("clip") else "imagenet"


def mean_std(name: str) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """(mean, std) RGB triples of normalisation `name`, on the [0, 1] pixel scale."""
    if name not in MEAN_STD:
        raise ValueError(f"Unknown normalization '{name}'. Valid names: {', '.join(MEAN_STD)}.")
    return MEAN_STD[name]
