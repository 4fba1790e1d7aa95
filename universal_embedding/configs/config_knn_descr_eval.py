"""Config of `descr_eval`: evaluate saved descriptors (default: test_knn, separate and merged).

    python -m universal_embedding.descr_eval \
        --config=universal_embedding/configs/config_knn_descr_eval.py --workdir=W \
        --config.descr_path=descriptors.npz --config.info_files_dir=data/info_files

Setups evaluated = eval_knns minus disabled_separate_knns / disabled_merged_knns;
e.g. `--config.disabled_separate_knns=train_knn` adds val_knn to the separate protocol.
`--config.save_descriptors=True` writes the descriptors again in descriptor_format (npz or
original): a format converter.
"""

from __future__ import annotations

import ml_collections

from universal_embedding.configs import base


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    c = base.get_config(arg)
    c.descr_path = ""  # .npz ('domain/split' keys), or JSON (.json / the original's .pkl)
    # Files of several embeddings ('domain/split/embedding'): which one; '' = the first of
    # embedd_to_eval when it names one (UDON configs), else the universal student (or the file's
    # only embedding).
    c.descr_embedding = ""
    c.eval_knns = "train_knn,val_knn,test_knn"
    c.disabled_separate_knns = "train_knn,val_knn"
    c.disabled_merged_knns = "train_knn,val_knn"
    return c
