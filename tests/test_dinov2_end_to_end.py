"""DINOv2 ViT-B/14 at 224 px with random weights, end to end through the command lines."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

MERGED = "average:common:test_knn:mp_5"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow  # a B/14 train step and evaluation compiled on CPU: minutes
def test_dinov2_b14_at_224_two_steps_through_the_command_lines(data_dir, tmp_path):
    """`main` with config_train_dinov2.py trains 2 steps of a randomly initialised B/14 (with
    4 register tokens) at 224 px, then `knn_main` evaluates the workdir; both results files
    hold the merged test metrics and the run's config.json keeps the register count."""
    data = [
        f"--config.train_dataset_dir={data_dir}/tfds",
        f"--config.eval_dataset_dir={data_dir}/tfds",
        f"--config.info_files_dir={data_dir}/info_files",
        "--config.knn_eval_names=cars,sop",
        "--config.eval_batch_size=8",
    ]
    train = [
        "--config=universal_embedding/configs/config_train_dinov2.py:variant=B/14,image_size=224",
        f"--workdir={tmp_path / 'train'}",
        "--config.pretrained_ckpt=",  # random weights
        "--config.model.num_registers=4",
        "--config.dataset_name=cars,sop",
        "--config.num_training_steps=2",
        "--config.batch_size=4",
        "--config.frozen_epochs=0",
        "--config.checkpoint_steps=2",
        "--config.eval_knns=",
    ]
    knn = [
        "--config=universal_embedding/configs/config_knn_dinov2.py:variant=B/14",
        f"--workdir={tmp_path / 'knn'}",
        f"--config.train_dir={tmp_path / 'train'}",
    ]
    for module, args in (("main", train), ("knn_main", knn)):
        proc = subprocess.run(
            [sys.executable, "-m", f"universal_embedding.{module}", *args, *data],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "train" / "config.json") as f:
        trained = json.load(f)
    assert trained["model_class"] == "dinov2_vit_with_embedding"
    assert (trained["model_type"], trained["model"]["num_registers"]) == ("B/14", 4)
    for folder in ("train", "knn"):
        with open(tmp_path / folder / "results.json") as f:
            results = json.load(f)
        assert 0.0 <= results[MERGED] <= 1.0 and "cars:common:test_knn:top_1" in results
