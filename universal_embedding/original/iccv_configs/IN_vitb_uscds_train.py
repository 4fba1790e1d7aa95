"""ICCV 2023 run USCDS: AugReg ImageNet-21k ViT-B/16, separate classifier, dataset_size sampling.

The original's `universal_embedding/iccv_configs/IN_vitb_uscds_train.py` (see _common.py).
"""

from universal_embedding.original.iccv_configs._common import iccv_config


def get_config(arg=None):
    return iccv_config("IN", "separate", "dataset_size", arg)
