"""SigLIP / SigLIP 2 image towers: big_vision `.npz` and Hugging Face safetensors -> backbone paths.

big_vision `.npz` (the released SigLIP and SigLIP 2 files): '/'-joined keys under `params/img/`
(or `img/`, or none for an image tower saved alone); the text tower (`txt/...`) and the
temperature and bias (`t`, `b`) are skipped, anything else under the root is reported. Encoder
blocks come as `Transformer/encoderblock_{i}/...` or, as the released files store them
(big_vision's `scan=True`), stacked along a leading layer axis in `Transformer/encoderblock/...`;
each layer of a stacked tensor is one backbone tensor. big_vision's block names
(`LayerNorm_0/1`, `MultiHeadDotProductAttention_0`, `MlpBlock_0`) become vit.py's
(`LayerNorm_0/2`, `MultiHeadDotProductAttention_1`, `MlpBlock_3`); the rest keep their names.

Hugging Face: `SiglipVisionModel` / `SiglipModel` (patch embedding as a conv) and
`Siglip2VisionModel` / `Siglip2Model` (patch embedding as a Linear over (row, column, channel)
flattened patches), with or without the `vision_model.` prefix; `text_model.*`, `logit_scale`
and `logit_bias` are skipped. The pooling head's fused `in_proj` is split into query/key/value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np

from universal_embedding.pretrained.common import (
    CheckpointError,
    Converted,
    Rule,
    apply_rules,
    conv_kernel,
    copy,
    dense_rules,
    fused_attention_rules,
    layer_norm_rules,
    split_attention_rules,
)

FAMILY = "siglip_vit_with_embedding"
POSEMB = "pos_embedding"
_BLOCK = "Transformer/encoderblock_"
_HEAD = "MAPHead_0/"

# ----------------------------------------------------------------------------- big_vision

_BV = r"Transformer/encoderblock_(\d+)/"
_BV_DST = r"Transformer/encoderblock_\1/"
BIG_VISION_RULES: list[Rule] = [
    (r"(embedding/(kernel|bias)|pos_embedding|Transformer/encoder_norm/(scale|bias))", r"\1", copy),
    (_BV + r"LayerNorm_0/(scale|bias)", _BV_DST + r"LayerNorm_0/\2", copy),
    (_BV + r"LayerNorm_1/(scale|bias)", _BV_DST + r"LayerNorm_2/\2", copy),
    (
        _BV + r"MultiHeadDotProductAttention_0/(query|key|value|out)/(kernel|bias)",
        _BV_DST + r"MultiHeadDotProductAttention_1/\2/\3",
        copy,
    ),
    (_BV + r"MlpBlock_0/(Dense_[01])/(kernel|bias)", _BV_DST + r"MlpBlock_3/\2/\3", copy),
    (
        r"MAPHead_0/(probe|LayerNorm_0/(scale|bias)|MlpBlock_0/Dense_[01]/(kernel|bias)"
        r"|MultiHeadDotProductAttention_0/(query|key|value|out)/(kernel|bias))",
        r"MAPHead_0/\1",
        copy,
    ),
]
BIG_VISION_SKIPPED = (r"txt/.*", r"t", r"b")  # under the root: text tower, temperature, bias
_STACKED = "Transformer/encoderblock/"


def is_big_vision(names: set[str]) -> bool:
    """True for big_vision SigLIP keys (an image tower with a MAP head)."""
    return any(re.fullmatch(r"(params/)?(img/)?MAPHead_0/probe", n) for n in names)


def _image_root(names: set[str]) -> str:
    """'params/img/', 'img/', 'params/' or '' (an image tower saved alone)."""
    for root in ("params/img/", "img/", "params/"):
        if root + "MAPHead_0/probe" in names:
            return root
    return ""


def _put(out: dict, origin: dict, name: str, array: np.ndarray, source: str) -> None:
    """out[name] = array, unless another tensor of the file already gave `name`."""
    if name in out:
        raise CheckpointError(
            f"Tensors '{origin[name]}' and '{source}' both give backbone tensor {name}: the file "
            "holds it twice (e.g. stacked and per layer); nothing was loaded. Keep one of them."
        )
    out[name], origin[name] = array, source


def _unstack(name: str, array: np.ndarray, out: dict, origin: dict, source: str) -> None:
    """A scanned block tensor [layers, ...] -> one `encoderblock_{i}` tensor per layer."""
    if array.ndim == 0:
        _put(out, origin, name, array, source)  # nothing to split: reported as unknown
        return
    rest = name.removeprefix(_STACKED)
    for i, layer in enumerate(array):
        _put(out, origin, f"{_BLOCK}{i}/{rest}", layer, f"{source}[{i}]")


def convert_big_vision(arrays: Mapping[str, np.ndarray], heads: int) -> Converted:
    """big_vision SigLIP keys -> SigLIP backbone paths; text tower, t and b skipped."""
    root = _image_root(set(arrays))
    outer = root.removesuffix("img/")
    skipped = [re.compile(re.escape(outer) + p) for p in BIG_VISION_SKIPPED]
    image: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    ignored, unknown = [], []
    for name, array in arrays.items():
        short = name.removeprefix(root)
        if root and not name.startswith(root):
            (ignored if any(p.fullmatch(name) for p in skipped) else unknown).append(name)
        elif short.startswith(_STACKED):
            _unstack(short, array, image, origin, name)
        else:
            _put(image, origin, short, array, name)
    out = apply_rules(image, BIG_VISION_RULES, (), heads)
    out.sources = {dst: origin[src] for dst, src in out.sources.items()}
    out.unrecognised = [origin[n] for n in out.unrecognised] + unknown
    out.ignored += ignored
    return out


# ----------------------------------------------------------------------------- Hugging Face


def patch_kernel(a: np.ndarray, heads: int) -> np.ndarray:
    """Patch embedding -> conv kernel [p, p, 3, D]: a Siglip conv weight [D, 3, p, p], or a
    Siglip2 Linear weight [D, p*p*3] over patches flattened as (row, column, channel)."""
    if a.ndim == 4:
        return conv_kernel(a, heads)
    p = math.isqrt(a.shape[-1] // 3) if a.ndim == 2 else 0
    if a.ndim != 2 or 3 * p * p != a.shape[-1]:
        return a  # reported as mis-shaped
    return a.T.reshape(p, p, 3, a.shape[0])


def position_rows(a: np.ndarray, heads: int) -> np.ndarray:
    """nn.Embedding weight [tokens, D] -> [1, tokens, D]."""
    return a[None]


_HB = r"encoder\.layers\.(\d+)\."
_HD = r"Transformer/encoderblock_\1/"
_ATT = _HD + "MultiHeadDotProductAttention_1"
_POOL = "MAPHead_0/MultiHeadDotProductAttention_0"
HF_RULES: list[Rule] = [
    (r"embeddings\.patch_embedding\.weight", "embedding/kernel", patch_kernel),
    (r"embeddings\.patch_embedding\.bias", "embedding/bias", copy),
    (r"embeddings\.position_embedding\.weight", POSEMB, position_rows),
    *layer_norm_rules(_HB + r"layer_norm1", _HD + "LayerNorm_0"),
    *layer_norm_rules(_HB + r"layer_norm2", _HD + "LayerNorm_2"),
    *split_attention_rules(
        _HB + r"self_attn\.{}_proj", _HB + r"self_attn\.out_proj", _ATT, ("q", "k", "v")
    ),
    *dense_rules(_HB + r"mlp\.fc1", _HD + "MlpBlock_3/Dense_0"),
    *dense_rules(_HB + r"mlp\.fc2", _HD + "MlpBlock_3/Dense_1"),
    *layer_norm_rules(r"post_layernorm", "Transformer/encoder_norm"),
    (r"head\.probe", "MAPHead_0/probe", copy),
    *fused_attention_rules(
        r"head\.attention\.in_proj_weight",
        r"head\.attention\.in_proj_bias",
        r"head\.attention\.out_proj",
        _POOL,
    ),
    *layer_norm_rules(r"head\.layernorm", "MAPHead_0/LayerNorm_0"),
    *dense_rules(r"head\.mlp\.fc1", "MAPHead_0/MlpBlock_0/Dense_0"),
    *dense_rules(r"head\.mlp\.fc2", "MAPHead_0/MlpBlock_0/Dense_1"),
]
HF_IGNORE = (r"text_model\..*", r"logit_scale", r"logit_bias", r"embeddings\.position_ids")


def is_hf_siglip(names: set[str]) -> bool:
    """True for Hugging Face SigLIP / SigLIP 2 vision keys (a pooling head with a probe)."""
    return any(re.fullmatch(r"(vision_model\.)?head\.probe", n) for n in names)


def convert_hf(arrays: Mapping[str, np.ndarray], heads: int) -> Converted:
    """HF SigLIP / SigLIP 2 names -> SigLIP backbone paths; text tower and logit scale skipped."""
    stripped: dict[str, np.ndarray] = {}
    origin: dict[str, str] = {}
    for name, array in arrays.items():
        _put(stripped, origin, name.removeprefix("vision_model."), array, name)
    out = apply_rules(stripped, HF_RULES, HF_IGNORE, heads)
    out.sources = {dst: origin[src] for dst, src in out.sources.items()}  # the file's names
    out.unrecognised = [origin[n] for n in out.unrecognised]
    out.ignored = [origin[n] for n in out.ignored]
    return out
