"""What defines a model: `ModelSpec`, built once by the entry points (universal_embedding.settings)
and taken by every builder, loader and evaluator instead of the whole config."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

# model.* fields of a spec (the size overrides are None unless set).
MODEL_FIELDS = (
    "output_dim",
    "dtype",
    "attention",
    "gelu_approximate",
    "remat",
    "hidden_size",
    "num_heads",
    "mlp_dim",
    "num_layers",
    "patch_size",
)
UDON_FIELDS = ("teacher_dim", "universal_student_dim")  # present only on UDON configs


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The model class and size, its input (image size, normalisation), its compute settings
    and, for UDON, its training domains (one teacher each) and Mlp widths."""

    model_class: str = "vit_with_embedding"
    model_type: str = "B/16"
    image_size: int = 224
    normalization: str = ""  # '' = from model_class; or 'clip' / 'imagenet'
    embedd_to_eval: str = "projected"  # or 'backbone_out'
    output_dim: int = 64
    dtype: str = "float32"
    attention: str = "xla"
    gelu_approximate: bool = True
    remat: bool = False  # gradient checkpointing per transformer block (a compute setting)
    hidden_size: int | None = None
    num_heads: int | None = None
    mlp_dim: int | None = None
    num_layers: int | None = None
    patch_size: int | None = None
    teacher_dim: tuple[int, ...] | None = None
    universal_student_dim: tuple[int, ...] | None = None
    domains: tuple[str, ...] = ()  # training domains, in dataset_name order (UDON teachers)

    def model_fields(self) -> dict:
        """The model.* fields as a config holds them (UDON widths only when set)."""
        out = {f: getattr(self, f) for f in MODEL_FIELDS}
        out.update({f: getattr(self, f) for f in UDON_FIELDS if getattr(self, f) is not None})
        return out

    def with_model_fields(self, fields: Mapping) -> ModelSpec:
        """A copy with model.* fields replaced (names a spec does not hold are ignored)."""
        known = {f: v for f, v in fields.items() if f in MODEL_FIELDS + UDON_FIELDS}
        for name in UDON_FIELDS:  # a list when read back from config.json
            if known.get(name) is not None:
                known[name] = tuple(known[name])
        return dataclasses.replace(self, **known)
