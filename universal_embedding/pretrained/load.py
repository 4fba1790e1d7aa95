"""Loading pretrained backbone weights into a model's params.

`load_pretrained` detects the format from the file, checks that the checkpoint's model
family and size match the model spec, and replaces params['backbone'] strictly: a missing,
unexpected or mis-shaped tensor raises with the full list; nothing is left random.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from universal_embedding.errors import limits
from universal_embedding.models.spec import ModelSpec
from universal_embedding.models.udon import backbone_family
from universal_embedding.pretrained import augreg, clip, dinov2, hf, siglip
from universal_embedding.pretrained.common import (
    CheckpointError,
    Converted,
    flatten,
    merge_strict,
    resize_position_embedding,
)
from universal_embedding.pretrained.files import read_checkpoint, resolve_path

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Format:
    """A checkpoint naming scheme and the model family it belongs to."""

    name: str
    family: str  # config.model_class it loads into
    detect: Callable[[set[str]], bool]
    convert: Callable[[Mapping[str, np.ndarray], int], Converted]
    posemb: str
    pos_reference: str = ""  # DINOv2: the implementation whose posemb resize the file is held to


FORMATS = (  # SigLIP first: its names would also pass the AugReg and HF CLIP tests
    Format(
        "big_vision SigLIP",
        siglip.FAMILY,
        siglip.is_big_vision,
        siglip.convert_big_vision,
        siglip.POSEMB,
    ),
    Format(
        "Hugging Face SigLIP", siglip.FAMILY, siglip.is_hf_siglip, siglip.convert_hf, siglip.POSEMB
    ),
    # DINOv2 before Hugging Face ViT, whose test its Hugging Face names would pass
    Format(
        "Hugging Face DINOv2",
        dinov2.FAMILY,
        dinov2.is_hf_dinov2,
        dinov2.convert_hf,
        dinov2.POSEMB,
        "transformers",
    ),  # fmt: skip
    Format(
        "DINOv2 torch hub",
        dinov2.FAMILY,
        dinov2.is_hub_dinov2,
        dinov2.convert_hub,
        dinov2.POSEMB,
        "timm",
    ),  # fmt: skip
    Format("AugReg ViT", augreg.FAMILY, augreg.is_augreg, augreg.convert, augreg.POSEMB),
    Format("OpenAI CLIP", clip.FAMILY, clip.is_openai_clip, clip.convert, clip.POSEMB),
    Format("Hugging Face CLIP", hf.CLIP_FAMILY, hf.is_hf_clip, hf.convert_clip, clip.POSEMB),
    Format("Hugging Face ViT", hf.VIT_FAMILY, hf.is_hf_vit, hf.convert_vit, augreg.POSEMB),
)

# Where each family keeps the tensors that reveal its size: hidden, mlp, patch, heads, blocks.
SIZE_PATHS = {
    "vit_with_embedding": (
        "cls",
        "Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel",
        "embedding/kernel",
        "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel",
        r"Transformer/encoderblock_(\d+)/",
    ),
    "clip_vit_with_embedding": (
        "class_embedding",
        "transformer/resblocks_0/mlp/c_fc/kernel",
        "conv1/kernel",
        "transformer/resblocks_0/attn/query/kernel",
        r"transformer/resblocks_(\d+)/",
    ),
    "dinov2_vit_with_embedding": (
        "cls_token",
        "blocks_0/mlp/Dense_0/kernel",
        "patch_embed/kernel",
        "blocks_0/attn/query/kernel",
        r"blocks_(\d+)/",
    ),
    "siglip_vit_with_embedding": (
        "MAPHead_0/probe",
        "Transformer/encoderblock_0/MlpBlock_3/Dense_0/kernel",
        "embedding/kernel",
        "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel",
        r"Transformer/encoderblock_(\d+)/",
    ),
}


_NEVER_LOADED = re.compile("|".join(augreg.IGNORE))


def never_loaded(name: str) -> bool:
    """Tensors no format loads and whose names no format needs to be detected (AugReg's
    ImageNet classifier head and pre-logits): never read from the file."""
    return bool(_NEVER_LOADED.fullmatch(name))


def detect_format(path: str, names: set[str]) -> Format:
    """The naming scheme of a checkpoint's tensor names."""
    for fmt in FORMATS:
        if fmt.detect(names):
            return fmt
    sample = ", ".join(sorted(names)[:8])
    raise CheckpointError(
        f"{path}: unknown tensor names (e.g. {sample}); expected AugReg ViT, OpenAI CLIP, "
        "big_vision SigLIP, DINOv2 (torch hub) or Hugging Face CLIPVisionModel/ViTModel/"
        "SiglipVisionModel/Dinov2Model weights."
    )


def _size(flat: Mapping[str, object], family: str):
    """BackboneSize read off tensor shapes, or None when a revealing tensor is absent."""
    from universal_embedding.models.embedding_model import BackboneSize

    hidden, mlp, patch, heads, block = SIZE_PATHS[family]
    if any(p not in flat for p in (hidden, mlp, patch, heads)):
        return None
    shape = lambda p: np.shape(flat[p])  # noqa: E731
    blocks = {int(m.group(1)) for p in flat if (m := re.match(block, p))}
    q = shape(heads)
    return BackboneSize(
        hidden_size=shape(hidden)[-1],
        num_heads=q[1] if len(q) == 3 else -1,
        mlp_dim=shape(mlp)[-1],
        num_layers=len(blocks),
        patch_size=shape(patch)[0],
    )


def _size_headline(model_size, ckpt_size, spec: ModelSpec) -> str:
    if ckpt_size is None or ckpt_size == model_size:
        return ""
    return (
        f"The checkpoint holds {ckpt_size.describe()}, but the model is "
        f"{model_size.describe()} (config.model_type={spec.model_type!r} and config.model.* "
        "overrides): set --config.model_type to the checkpoint's size."
    )


def load_pretrained(params: dict, path: str, spec: ModelSpec) -> dict:
    """params with 'backbone' replaced by the checkpoint at `path`; projection and heads kept."""
    path = resolve_path(path)
    container, arrays = read_checkpoint(path, skip=never_loaded)
    fmt = detect_format(path, set(arrays))
    if fmt.family != backbone_family(spec.model_class):  # UDON models share the backbones
        raise CheckpointError(
            f"{path} holds {fmt.name} weights, which load into "
            f"--config.model_class={fmt.family}, but config.model_class={spec.model_class!r}."
        )
    backbone = flatten(params["backbone"])
    model_size = _size(backbone, fmt.family)
    _check_heads(path, fmt, model_size.num_heads, model_size.hidden_size)
    conv = fmt.convert(arrays, model_size.num_heads)
    headline = _size_headline(model_size, _size(conv.params, fmt.family), spec)
    resize = resize_position_embedding
    if fmt.pos_reference:
        resize = dinov2.posemb_resizer(spec.pos_interpolation or fmt.pos_reference, conv)
    loaded = merge_strict(params["backbone"], conv, path, fmt.posemb, headline, resize)
    _check_finite(loaded, conv.sources, path)
    log.info(
        "Loaded %d backbone tensors from %s (%s, %s); skipped %d: %s",
        len(backbone),
        path,
        fmt.name,
        container,
        len(conv.ignored),
        ", ".join(sorted(conv.ignored)[:5]) + (" ..." if len(conv.ignored) > 5 else ""),
    )
    return {**params, "backbone": jax.tree_util.tree_map(jnp.asarray, loaded)}


def _check_finite(backbone: dict, sources: Mapping[str, str], path: str) -> None:
    """Refuse NaN/inf in any loaded tensor (skipped tensors, e.g. a text tower, do not count)."""
    for name, value in flatten(backbone).items():
        bad = int(np.size(value) - np.isfinite(value).sum())
        if bad:
            src = sources.get(name, name)
            raise CheckpointError(
                f"{path}: tensor '{src}' holds {bad} non-finite value(s) (NaN or inf); nothing "
                "was loaded. Download the checkpoint again or use another one."
            )


def _check_heads(path: str, fmt: Format, heads: int, hidden: int) -> None:
    """Head counts are not in OpenAI/HF tensors: check config.json or CLIP's 64-wide heads."""
    config_json = os.path.join(os.path.dirname(path), "config.json")
    if fmt.name.startswith("Hugging Face") and os.path.isfile(config_json):
        hf_config = limits.read_json_object(config_json, "Hugging Face config")
        vision = hf_config.get("vision_config", hf_config)
        found = vision.get("num_attention_heads") if isinstance(vision, dict) else None
        if found is not None and type(found) is not int:
            raise CheckpointError(
                f"{config_json}: num_attention_heads is {limits.short(found, 40)!r}, not a number."
            )
        if found is not None and found != heads:
            raise CheckpointError(
                f"{config_json} says {found} attention heads, the model has {heads}: "
                "set --config.model_type (or config.model.num_heads) to match."
            )
    elif fmt.name == "OpenAI CLIP" and hidden // 64 != heads:
        log.warning(
            "OpenAI CLIP towers use 64-wide heads (%d heads for hidden %d); the model has %d.",
            hidden // 64,
            hidden,
            heads,
        )
