"""The original's `configs/config_descr_eval.py` path: our `config_knn_descr_eval.py`.

    python -m universal_embedding.descr_eval \
        --config=universal_embedding/configs/config_descr_eval.py --workdir=W \
        --config.descr_path=descriptors.json --config.info_files_dir=data/info_files
"""

from __future__ import annotations

import ml_collections

from universal_embedding.configs import config_knn_descr_eval


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    return config_knn_descr_eval.get_config(arg)
