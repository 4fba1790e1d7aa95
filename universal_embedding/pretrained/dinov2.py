"""DINOv2 checkpoints -> Dinov2ViT backbone paths (models/dinov2.py).

Two layouts are read: Hugging Face safetensors of `Dinov2Model` / `Dinov2WithRegistersModel`
(`embeddings.*`, `encoder.layer.{i}.*`, `layernorm.*`; a `dinov2.` prefix, as
`Dinov2ForImageClassification` writes it, is dropped and its classifier skipped) and the torch
hub `.pth` files of facebookresearch/dinov2 (`cls_token`, `pos_embed`, `register_tokens`,
`patch_embed.proj.*`, `blocks.{i}.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1,
mlp.fc2, ls2.gamma}`, `norm.*`). `mask_token` (used only in DINOv2's masked pretraining) is
skipped. Register tokens are found by name; the position embedding is resized to the model's
grid by the reference config.model.pos_interpolation names (posemb.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import numpy as np

from universal_embedding.pretrained.common import (
    Converted,
    Rule,
    apply_rules,
    conv_kernel,
    copy,
    dense_rules,
    fused_attention_rules,
    hf_vit_embedding_rules,
    layer_norm_rules,
    split_attention_rules,
)
from universal_embedding.pretrained.posemb import resize_dinov2_posemb

FAMILY = "dinov2_vit_with_embedding"
POSEMB = "pos_embed"
REGISTERS = "register_tokens"

_HB = r"encoder\.layer\.(\d+)\."
_D = r"blocks_\1/"
HF_RULES: list[Rule] = [
    *hf_vit_embedding_rules("cls_token", POSEMB, "patch_embed"),
    (r"embeddings\.register_tokens", REGISTERS, copy),
    *layer_norm_rules(_HB + r"norm1", _D + "norm1"),
    *layer_norm_rules(_HB + r"norm2", _D + "norm2"),
    *split_attention_rules(
        _HB + r"attention\.attention\.{}", _HB + r"attention\.output\.dense", _D + "attn"
    ),
    (_HB + r"layer_scale1\.lambda1", _D + "ls1/gamma", copy),
    (_HB + r"layer_scale2\.lambda1", _D + "ls2/gamma", copy),
    *dense_rules(_HB + r"mlp\.fc1", _D + "mlp/Dense_0"),
    *dense_rules(_HB + r"mlp\.fc2", _D + "mlp/Dense_1"),
    *layer_norm_rules(r"layernorm", "norm"),
]
HF_IGNORE = (r"embeddings\.mask_token", r"classifier\..*", r"pooler\..*")

_TB = r"blocks\.(\d+)\."
HUB_RULES: list[Rule] = [
    (r"cls_token", "cls_token", copy),
    (r"register_tokens", REGISTERS, copy),
    (r"pos_embed", POSEMB, copy),
    (r"patch_embed\.proj\.weight", "patch_embed/kernel", conv_kernel),
    (r"patch_embed\.proj\.bias", "patch_embed/bias", copy),
    *layer_norm_rules(_TB + r"norm1", _D + "norm1"),
    *layer_norm_rules(_TB + r"norm2", _D + "norm2"),
    *fused_attention_rules(
        _TB + r"attn\.qkv\.weight", _TB + r"attn\.qkv\.bias", _TB + r"attn\.proj", _D + "attn"
    ),
    (_TB + r"ls1\.gamma", _D + "ls1/gamma", copy),
    (_TB + r"ls2\.gamma", _D + "ls2/gamma", copy),
    *dense_rules(_TB + r"mlp\.fc1", _D + "mlp/Dense_0"),
    *dense_rules(_TB + r"mlp\.fc2", _D + "mlp/Dense_1"),
    *layer_norm_rules(r"norm", "norm"),
]
HUB_IGNORE = (r"mask_token",)


def is_hf_dinov2(names: set[str]) -> bool:
    """True for Hugging Face Dinov2Model / Dinov2WithRegistersModel keys."""
    return any(
        re.fullmatch(r"(dinov2\.)?encoder\.layer\.\d+\.layer_scale1\.lambda1", n) for n in names
    )


def is_hub_dinov2(names: set[str]) -> bool:
    """True for facebookresearch/dinov2 torch hub state-dict keys."""
    return any(re.fullmatch(r"blocks\.\d+\.ls1\.gamma", n) for n in names)


def convert_hf(arrays: Mapping[str, np.ndarray], heads: int) -> Converted:
    """Hugging Face DINOv2 names -> backbone paths."""
    stripped = {n.removeprefix("dinov2."): a for n, a in arrays.items()}
    return apply_rules(stripped, HF_RULES, HF_IGNORE, heads)


def convert_hub(arrays: Mapping[str, np.ndarray], heads: int) -> Converted:
    """torch hub DINOv2 names -> backbone paths."""
    return apply_rules(arrays, HUB_RULES, HUB_IGNORE, heads)


def posemb_resizer(mode: str, conv: Converted) -> Callable[[np.ndarray, int], np.ndarray]:
    """The resize of the checkpoint's position embedding to `num_tokens` that `mode` does."""
    registers = REGISTERS in conv.params

    def resize(posemb: np.ndarray, num_tokens: int) -> np.ndarray:
        return resize_dinov2_posemb(posemb, num_tokens, mode, registers)

    return resize


def registers_in(arrays: Mapping[str, object]) -> int:
    """Register tokens a DINOv2 checkpoint holds (0 when none or not a DINOv2 file)."""
    for name in (REGISTERS, "embeddings.register_tokens", "dinov2.embeddings.register_tokens"):
        if name in arrays:
            shape = np.shape(arrays[name])
            return int(shape[1]) if len(shape) == 3 else 0
    return 0


def registers_in_file(path: str) -> int:
    """Register tokens of the DINOv2 checkpoint at `path` (a missing file counts 0: loading it
    then fails with its own message)."""
    import os

    from universal_embedding.pretrained.files import read_checkpoint, resolve_path

    if not os.path.exists(path):
        return 0
    return registers_in(read_checkpoint(resolve_path(path))[1])
