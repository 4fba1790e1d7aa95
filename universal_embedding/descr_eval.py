"""Evaluate saved descriptors on UnED kNN setups -> workdir/results.{json,csv,md} + printed table.

    python -m universal_embedding.descr_eval \
        --config=universal_embedding/configs/config_knn_descr_eval.py --workdir=W \
        --config.descr_path=P --config.info_files_dir=I [--config.knn_eval_names=cars,sop]

Imports neither TensorFlow nor the models: descriptors (.npz or original JSON)
and info files are all it reads.
"""

from __future__ import annotations

from universal_embedding import app
from universal_embedding.knn.descriptors import load_descriptors
from universal_embedding.knn.report import evaluate_and_report


def descr_eval(config, workdir: str) -> dict[str, float]:
    """Load config.descr_path and evaluate it with the config's kNN plan; write results."""
    if not config.descr_path:
        raise ValueError("--config.descr_path is required (a .npz or .json descriptor file).")
    # several-embedding files: which one ('' or absent: the universal student)
    descriptors = load_descriptors(config.descr_path, config.get("descr_embedding") or None)
    return evaluate_and_report(descriptors, config, workdir)


def cli() -> None:
    """The `ue-descr-eval` command."""
    app.run(descr_eval, defaults="config_knn_descr_eval")


if __name__ == "__main__":
    app.run(descr_eval, defaults="config_knn_descr_eval")
