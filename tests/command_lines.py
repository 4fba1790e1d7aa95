"""`main` then `knn_main` through their command lines, as the slow end-to-end tests run them.

Two training steps on the cars and sop test data of conftest.py's `data_dir`, then a k-NN
evaluation of the training workdir; both write results.json with the merged test metric.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

MERGED = "average:common:test_knn:mp_5"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def data_flags(data_dir: str) -> list[str]:
    """Flags pointing a train or k-NN config at the test data (cars and sop)."""
    return [
        f"--config.train_dataset_dir={data_dir}/tfds",
        f"--config.eval_dataset_dir={data_dir}/tfds",
        f"--config.info_files_dir={data_dir}/info_files",
        "--config.knn_eval_names=cars,sop",
        "--config.eval_batch_size=8",
    ]


def two_step_train_flags(config: str, workdir: str, pretrained: str, *extra: str) -> list[str]:
    """Flags for `main`: `config` trained 2 steps (batch 4, no frozen epochs) from `pretrained`
    ('' = random weights) on cars and sop, checkpointed at step 2, no k-NN during training."""
    return [
        f"--config={config}",
        f"--workdir={workdir}",
        f"--config.pretrained_ckpt={pretrained}",
        *extra,
        "--config.dataset_name=cars,sop",
        "--config.num_training_steps=2",
        "--config.batch_size=4",
        "--config.frozen_epochs=0",
        "--config.checkpoint_steps=2",
        "--config.eval_knns=",
    ]


def run_train_then_knn(train_flags: list[str], knn_config: str, tmp_path, data_dir) -> None:
    """`main` with `train_flags` (workdir tmp_path/train), then `knn_main` with `knn_config` on
    that workdir (workdir tmp_path/knn); both must exit 0 and write a merged metric in [0, 1]."""
    knn = [
        f"--config={knn_config}",
        f"--workdir={tmp_path / 'knn'}",
        f"--config.train_dir={tmp_path / 'train'}",
    ]
    for module, args in (("main", train_flags), ("knn_main", knn)):
        proc = subprocess.run(
            [sys.executable, "-m", f"universal_embedding.{module}", *args, *data_flags(data_dir)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    for folder in ("train", "knn"):
        with open(tmp_path / folder / "results.json") as f:
            results = json.load(f)
        assert 0.0 <= results[MERGED] <= 1.0 and "cars:common:test_knn:top_1" in results
