"""DINOv2 ViT-B/14 at 224 px with random weights, end to end through the command lines."""

from __future__ import annotations

import json

import pytest

from tests.command_lines import run_train_then_knn, two_step_train_flags


@pytest.mark.slow  # a B/14 train step and evaluation compiled on CPU: minutes
def test_dinov2_b14_at_224_two_steps_through_the_command_lines(data_dir, tmp_path):
    """`main` with config_train_dinov2.py trains 2 steps of a randomly initialised B/14 (with
    4 register tokens) at 224 px, then `knn_main` evaluates the workdir; both results files
    hold the merged test metrics and the run's config.json keeps the register count."""
    train = two_step_train_flags(
        "universal_embedding/configs/config_train_dinov2.py:variant=B/14,image_size=224",
        str(tmp_path / "train"),
        "",  # random weights
        "--config.model.num_registers=4",
    )
    knn_config = "universal_embedding/configs/config_knn_dinov2.py:variant=B/14"
    run_train_then_knn(train, knn_config, tmp_path, data_dir)
    with open(tmp_path / "train" / "config.json") as f:
        trained = json.load(f)
    assert trained["model_class"] == "dinov2_vit_with_embedding"
    assert (trained["model_type"], trained["model"]["num_registers"]) == ("B/14", 4)
