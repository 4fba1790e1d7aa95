"""Hugging Face safetensors: `CLIPVisionModel`/`CLIPModel` and `ViTModel` names -> backbone paths.

Both the Hub layout (`vision_model.`-prefixed CLIP keys, `vit.`-prefixed ViT classifier keys)
and the prefix-free layout that transformers 5 writes for `CLIPVisionModel` are read. Text
tower, projections, pooler and classifier tensors are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np

from universal_embedding.pretrained.common import (
    Converted,
    Rule,
    apply_rules,
    conv_kernel,
    copy,
    dense_rules,
    hf_vit_embedding_rules,
    layer_norm_rules,
    split_attention_rules,
)

CLIP_FAMILY = "clip_vit_with_embedding"
VIT_FAMILY = "vit_with_embedding"

_CB = r"encoder\.layers\.(\d+)\."
_CD = r"transformer/resblocks_\1/"
CLIP_RULES: list[Rule] = [
    (r"embeddings\.patch_embedding\.weight", "conv1/kernel", conv_kernel),
    (r"embeddings\.class_embedding", "class_embedding", copy),
    (r"embeddings\.position_embedding\.weight", "positional_embedding", copy),
    *layer_norm_rules(r"pre_layrnorm", "ln_pre"),
    *layer_norm_rules(r"post_layernorm", "ln_post"),
    *layer_norm_rules(_CB + r"layer_norm1", _CD + "ln_1"),
    *layer_norm_rules(_CB + r"layer_norm2", _CD + "ln_2"),
    *split_attention_rules(
        _CB + r"self_attn\.{}_proj", _CB + r"self_attn\.out_proj", _CD + "attn", ("q", "k", "v")
    ),
    *dense_rules(_CB + r"mlp\.fc1", _CD + "mlp/c_fc"),
    *dense_rules(_CB + r"mlp\.fc2", _CD + "mlp/c_proj"),
]
CLIP_IGNORE = (
    r"text_model\..*",
    r"(visual|text)_projection\.weight",
    r"logit_scale",
    r"embeddings\.position_ids",
)

_VB = r"encoder\.layer\.(\d+)\."
_VD = r"Transformer/encoderblock_\1/"
_ATT = _VD + "MultiHeadDotProductAttention_1"
VIT_RULES: list[Rule] = [
    *hf_vit_embedding_rules("cls", "Transformer/posembed_input/pos_embedding", "embedding"),
    *layer_norm_rules(_VB + r"layernorm_before", _VD + "LayerNorm_0"),
    *layer_norm_rules(_VB + r"layernorm_after", _VD + "LayerNorm_2"),
    *split_attention_rules(
        _VB + r"attention\.attention\.{}", _VB + r"attention\.output\.dense", _ATT
    ),
    *dense_rules(_VB + r"intermediate\.dense", _VD + "MlpBlock_3/Dense_0"),
    *dense_rules(_VB + r"output\.dense", _VD + "MlpBlock_3/Dense_1"),
    *layer_norm_rules(r"layernorm", "Transformer/encoder_norm"),
]
VIT_IGNORE = (r"pooler\..*", r"classifier\..*", r"embeddings\.mask_token")


def is_hf_clip(names: set[str]) -> bool:
    """True for Hugging Face CLIP vision keys."""
    return any(re.match(r"(vision_model\.)?encoder\.layers\.\d+\.self_attn\.", n) for n in names)


def is_hf_vit(names: set[str]) -> bool:
    """True for Hugging Face ViT keys."""
    return any(re.match(r"(vit\.)?encoder\.layer\.\d+\.attention\.attention\.", n) for n in names)


def _strip(arrays: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {n.removeprefix(prefix): a for n, a in arrays.items()}


def convert_clip(arrays: Mapping[str, np.ndarray], heads: int) -> Converted:
    """HF CLIP vision names -> CLIP backbone paths."""
    return apply_rules(_strip(arrays, "vision_model."), CLIP_RULES, CLIP_IGNORE, heads)


def convert_vit(arrays: Mapping[str, np.ndarray], heads: int) -> Converted:
    """HF ViT names -> AugReg backbone paths."""
    return apply_rules(_strip(arrays, "vit."), VIT_RULES, VIT_IGNORE, heads)
