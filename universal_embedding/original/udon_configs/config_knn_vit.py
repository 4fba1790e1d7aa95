"""The original UDON code's `universal_embedding/udon_configs/config_knn_vit.py`, found by that
path: configs/config_knn_vit.py with that file's values (both UDON embeddings, the student
first; the original's domain order; test setups only; descriptors saved; evaluation batches
of 1024; docs/udon.md).
"""

from universal_embedding.configs import config_knn_vit, config_train_udon


def get_config(arg=None):
    c = config_knn_vit.get_config(arg)
    c.embedd_to_eval = "universal_student_embedd,teacher_embedd"
    c.knn_eval_names = config_train_udon.UDON_DOMAINS
    c.disabled_separate_knns = c.disabled_merged_knns = "train_knn,val_knn"
    c.save_descriptors = True
    c.eval_batch_size = 1024
    return c
