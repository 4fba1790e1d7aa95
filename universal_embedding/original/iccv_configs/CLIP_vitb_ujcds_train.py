"""ICCV 2023 run UJCDS: CLIP ViT-B/16, joint classifier, dataset_size sampling.

The original's `universal_embedding/iccv_configs/CLIP_vitb_ujcds_train.py` (see _common.py).
"""

from universal_embedding.original.iccv_configs._common import iccv_config


def get_config(arg=None):
    return iccv_config("CLIP", "joint", "dataset_size", arg)
