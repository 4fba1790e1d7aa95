"""The eight ICCV 2023 runs of the original `iccv_configs/` folder, on our train configs.

`<backbone>_vitb_<u><s|j>c<rr|ds>_train.py`: IN (AugReg ImageNet-21k ViT-B/16) or CLIP ViT-B/16,
separate or joint classifier, round-robin or dataset-size sampling. Values of the original
files that are not already our defaults are set here: its domain order (it fixes the round-robin
order and the joint head's label offsets), training losses logged 10 times per epoch and a
checkpoint every epoch.
"""

from __future__ import annotations

import ml_collections

from universal_embedding.configs import base, config_train_clip_vit, config_train_vit

ORIGINAL_DOMAINS = "food2k,cars,sop,inshop,inat,met,gldv2,rp2k"
BACKBONES = {"IN": config_train_vit, "CLIP": config_train_clip_vit}


def iccv_config(
    backbone: str, classifier: str, sampling: str, arg: str | None
) -> ml_collections.ConfigDict:
    """One ICCV run (no argument string: every choice is in the file name)."""
    base.parse_arg(arg)
    c = BACKBONES[backbone].get_config(f"classifier={classifier},sampling={sampling}")
    c.dataset_name = c.knn_eval_names = ORIGINAL_DOMAINS
    c.log_summary_steps = -10  # log_summary_steps_frequency = 10
    c.checkpoint_steps = -1  # checkpoint_steps_frequency = 1
    c.log_eval_steps = -1  # log_eval_steps_frequency = 1
    return c
