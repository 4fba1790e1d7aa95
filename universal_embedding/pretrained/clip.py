"""OpenAI CLIP state dicts (`vit_b16.npy`, open_clip `.pt`/`.bin`) -> CLIP backbone paths.

Only the visual tower is read: with `visual.`-prefixed keys everything else (the text tower,
logit_scale) is skipped; `visual.proj` is skipped too (the projection replaces it). The fused
`attn.in_proj_weight/bias` is split into query/key/value.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from universal_embedding.pretrained.common import (
    Converted,
    Rule,
    apply_rules,
    conv_kernel,
    copy,
    dense_rules,
    fused_attention_rules,
    layer_norm_rules,
)

FAMILY = "clip_vit_with_embedding"
POSEMB = "positional_embedding"
BLOCK = r"transformer\.resblocks\.(\d+)\."
DST = r"transformer/resblocks_\1/"
RULES: list[Rule] = [
    (r"conv1\.weight", "conv1/kernel", conv_kernel),
    (r"class_embedding", "class_embedding", copy),
    (r"positional_embedding", "positional_embedding", copy),
    *layer_norm_rules(r"ln_pre", "ln_pre"),
    *layer_norm_rules(r"ln_post", "ln_post"),
    *layer_norm_rules(BLOCK + r"ln_1", DST + "ln_1"),
    *layer_norm_rules(BLOCK + r"ln_2", DST + "ln_2"),
    *fused_attention_rules(
        BLOCK + r"attn\.in_proj_weight",
        BLOCK + r"attn\.in_proj_bias",
        BLOCK + r"attn\.out_proj",
        DST + "attn",
    ),
    *dense_rules(BLOCK + r"mlp\.c_fc", DST + "mlp/c_fc"),
    *dense_rules(BLOCK + r"mlp\.c_proj", DST + "mlp/c_proj"),
]
IGNORE = (r"proj",)


def is_openai_clip(names: set[str]) -> bool:
    """True for OpenAI / open_clip state-dict keys (full model or visual tower alone)."""
    return any(n.startswith(("visual.transformer.resblocks.", "visual.conv1.")) for n in names) or (
        "conv1.weight" in names and any(n.startswith("transformer.resblocks.") for n in names)
    )


def convert(arrays: Mapping[str, np.ndarray], heads: int) -> Converted:
    """OpenAI keys -> backbone paths; non-visual keys are reported as ignored."""
    if any(n.startswith("visual.") for n in arrays):
        visual = {
            n.removeprefix("visual."): a for n, a in arrays.items() if n.startswith("visual.")
        }
        other = [n for n in arrays if not n.startswith("visual.")]
    else:
        visual, other = dict(arrays), []
    out = apply_rules(visual, RULES, IGNORE, heads)
    out.ignored += other
    return out
