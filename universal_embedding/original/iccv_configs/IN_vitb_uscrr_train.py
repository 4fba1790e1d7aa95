"""ICCV 2023 run USCRR: AugReg ImageNet-21k ViT-B/16, separate classifier, round_robin sampling.

The original's `universal_embedding/iccv_configs/IN_vitb_uscrr_train.py` (see _common.py).
"""

from universal_embedding.original.iccv_configs._common import iccv_config


def get_config(arg=None):
    return iccv_config("IN", "separate", "round_robin", arg)
