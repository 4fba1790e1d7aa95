"""AugReg ViT `.npz` checkpoints: their flat '/'-joined keys are the backbone's param paths.

`head/*` (the ImageNet-21k classifier) and `pre_logits/*` are not part of the backbone and
are skipped; every other key must be a backbone tensor of the right shape.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from universal_embedding.pretrained.common import Converted, apply_rules, copy

FAMILY = "vit_with_embedding"
POSEMB = "Transformer/posembed_input/pos_embedding"
IGNORE = (r"head/.*", r"pre_logits/.*")
RULES = [(r"(embedding/(kernel|bias)|cls|Transformer/.+)", r"\1", copy)]


def is_augreg(names: set[str]) -> bool:
    """True for AugReg / big_vision ViT keys."""
    return any(n.startswith("Transformer/encoderblock_") for n in names)


def convert(arrays: Mapping[str, np.ndarray], heads: int) -> Converted:
    """AugReg keys -> backbone paths (identity apart from the skipped head)."""
    return apply_rules(arrays, RULES, IGNORE, heads)
