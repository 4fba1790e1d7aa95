"""The original UDON code's `universal_embedding/udon_configs/config_train_vit.py`, found by that
path: UDON on AugReg ViT-B/16 (configs/config_train_udon.py, the original's settings) with the
values of that file that are not our defaults: training losses logged 10 times per epoch and a
checkpoint every epoch, evaluation batches of 1024 (docs/udon.md).
"""

from universal_embedding.configs import config_train_udon


def get_config(arg=None):
    c = config_train_udon.get_config(arg)
    c.log_summary_steps = -10  # log_summary_steps_frequency = 10
    c.checkpoint_steps = -1  # checkpoint_steps_frequency = 1
    c.eval_batch_size = 1024
    return c
