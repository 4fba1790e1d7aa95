"""The embedding model: backbone -> L2-normalised class token -> projection -> cosine heads.

Outputs (float32 in any compute dtype):
`backbone_out` [B, hidden] (normalised class token), `projected` [B, output_dim] (Dense then
normalised; == backbone_out when output_dim <= 0) and, with `head=<name>`, `logits` [B, C]
(cosines of that head; with `head=ALL_HEADS`, every head's cosines side by side [B, sum C] in
`classes_per_head` order, one matmul). Param tree: {'backbone', 'projection' (absent if
output_dim <= 0), 'heads': {<name>: {'kernel': [output_dim, C]}}}.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from universal_embedding.models.attention import pad_multiple, resolve_implementation
from universal_embedding.models.clip_vit import ClipViT
from universal_embedding.models.dinov2 import Dinov2ViT
from universal_embedding.models.heads import CosineHeads, l2_normalize
from universal_embedding.models.siglip_vit import SiglipViT
from universal_embedding.models.spec import ModelSpec
from universal_embedding.models.vit import ViT

ALL_HEADS = "*"  # head=ALL_HEADS: every head's cosines concatenated (train step, init_params)
MODEL_CLASSES = {
    "vit_with_embedding": ViT,
    "clip_vit_with_embedding": ClipViT,
    "dinov2_vit_with_embedding": Dinov2ViT,
    "siglip_vit_with_embedding": SiglipViT,
}
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
# name -> (hidden_size, num_heads, mlp_dim, num_layers); the patch size follows the '/'.
VARIANTS = {
    "Ti": (192, 3, 768, 12),
    "S": (384, 6, 1536, 12),
    "B": (768, 12, 3072, 12),
    "L": (1024, 16, 4096, 24),
    "So400m": (1152, 16, 4304, 27),  # SigLIP's shape-optimised ViT (big_vision vit.py)
}


@dataclasses.dataclass(frozen=True)
class BackboneSize:
    """Transformer sizes of a backbone."""

    hidden_size: int
    num_heads: int
    mlp_dim: int
    num_layers: int
    patch_size: int

    def describe(self) -> str:
        """'B/16 (hidden 768, 12 heads, mlp 3072, 12 layers, patch 16)' or the numbers alone."""
        numbers = (
            f"hidden {self.hidden_size}, {self.num_heads} heads, mlp {self.mlp_dim}, "
            f"{self.num_layers} layers, patch {self.patch_size}"
        )
        name = size_name(self)
        return f"{name} ({numbers})" if name else f"a custom size ({numbers})"


def size_from_type(model_type: str) -> BackboneSize:
    """'B/16' -> BackboneSize(768, 12, 3072, 12, 16)."""
    variant, _, patch = model_type.partition("/")
    if variant not in VARIANTS or not patch.isdigit():
        valid = ", ".join(f"{v}/<patch>" for v in VARIANTS)
        raise ValueError(
            f"Unknown config.model_type={model_type!r}; valid: {valid} (e.g. B/16, L/14)."
        )
    return BackboneSize(*VARIANTS[variant], patch_size=int(patch))


def size_name(size: BackboneSize, compare_heads: bool = True) -> str | None:
    """The model_type name of `size` ('S/16'), or None when it is no standard variant."""
    for name, (hidden, heads, mlp, layers) in VARIANTS.items():
        if (hidden, mlp, layers) == (size.hidden_size, size.mlp_dim, size.num_layers) and (
            heads == size.num_heads or not compare_heads
        ):
            return f"{name}/{size.patch_size}"
    return None


def backbone_size(spec: ModelSpec) -> BackboneSize:
    """Sizes from spec.model_type, each overridable by the spec's size field when not None."""
    size = size_from_type(spec.model_type)
    overrides = {}
    for field in dataclasses.fields(BackboneSize):
        value = getattr(spec, field.name)
        if value is not None:
            overrides[field.name] = int(value)
    return dataclasses.replace(size, **overrides)


class EmbeddingModel(nn.Module):
    """Backbone + optional projection + cosine heads; see the module docstring for outputs."""

    backbone: nn.Module
    output_dim: int = 64
    classes_per_head: Sequence[tuple[str, int]] = ()

    @nn.compact
    def __call__(
        self, images: jax.Array, train: bool = False, head: str | None = None
    ) -> dict[str, jax.Array]:
        del train  # no dropout or stochastic depth in these backbones
        if head is not None and head != ALL_HEADS:
            if not self.classes_per_head:
                raise ValueError(f"head={head!r} asked for, but the model was built without heads.")
            if head not in dict(self.classes_per_head):
                names = [n for n, _ in self.classes_per_head]
                raise ValueError(f"Unknown head {head!r}; the model has heads {names}.")
        backbone_out = l2_normalize(self.backbone(images))
        projected = backbone_out
        if self.output_dim > 0:
            dense = nn.Dense(self.output_dim, dtype=jnp.float32, name="projection")
            projected = l2_normalize(dense(backbone_out))
        out = {"backbone_out": backbone_out, "projected": projected}
        if head is None:
            return out
        heads = CosineHeads(tuple(self.classes_per_head), name="heads")
        if head == ALL_HEADS:
            names = [n for n, _ in self.classes_per_head]
            out["logits"] = heads(projected, names, concatenate=True)
        else:
            out["logits"] = heads(projected, [head])[head]
        return out


def build_model(spec: ModelSpec, classes_per_head: Mapping[str, int] | None) -> nn.Module:
    """The embedding model spec.model_class / model_type / model.* fields describe."""
    from universal_embedding.models import udon  # UDON: same backbones, other projections

    family = udon.backbone_family(spec.model_class)
    if family not in MODEL_CLASSES:
        valid = sorted([*MODEL_CLASSES, *udon.BACKBONE_FAMILY])
        raise ValueError(f"Unknown config.model_class={spec.model_class!r}; valid: {valid}.")
    dtype_name = spec.dtype
    if dtype_name not in DTYPES:
        raise ValueError(f"Unknown config.model.dtype={dtype_name!r}; valid: {sorted(DTYPES)}.")
    dtype = DTYPES[dtype_name]
    requested = spec.attention
    size = backbone_size(spec)
    extra = {}
    if family in ("vit_with_embedding", "siglip_vit_with_embedding"):  # CLIP: quick-GELU
        extra["gelu_approximate"] = bool(spec.gelu_approximate)
    if family == "dinov2_vit_with_embedding":
        extra["num_registers"] = int(spec.num_registers or 0)
    backbone = MODEL_CLASSES[family](
        **dataclasses.asdict(size),
        dtype=dtype,
        attention=resolve_implementation(requested, dtype),
        pad_multiple=pad_multiple(requested),
        remat=bool(spec.remat),
        **extra,
    )
    if udon.is_udon(spec.model_class):
        return udon.build_udon_model(spec, classes_per_head, backbone)
    heads = tuple((str(k), int(v)) for k, v in (classes_per_head or {}).items())
    return EmbeddingModel(backbone, spec.output_dim, heads)


def init_params(model: EmbeddingModel, rng: jax.Array, image_size: int) -> dict:
    """Freshly initialised params of every part of `model`, all heads included.

    Deterministic in `rng`. The random values come from an 'rbg' generator seeded by `rng`:
    the same init drawn with threefry takes 2-3x longer to compile on CPU. Compiled once per
    (model, image_size).
    """
    return _init(model, rng, image_size)


@functools.partial(jax.jit, static_argnums=(0, 2))
def _init(model: EmbeddingModel, rng: jax.Array, image_size: int) -> dict:
    images = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    heads = getattr(model, "classes_per_head", None) or getattr(model, "classes", None)
    head = ALL_HEADS if heads else None
    key = jax.random.wrap_key_data(jax.random.bits(rng, (4,), jnp.uint32), impl="rbg")
    return model.init(key, images, head=head)["params"]
