"""A bad training config fails at start-up, in one line, and leaves nothing in the workdir."""

from __future__ import annotations

import os
import shutil

import ml_collections
import pytest
from absl import logging

from universal_embedding import config_checks
from universal_embedding import main as train_main
from universal_embedding.configs import tiny


def tiny_config(data_dir: str, **overrides):
    c = tiny.get_config(f"data_dir={data_dir}")
    for key, value in overrides.items():
        group, _, name = key.rpartition(".")
        (c[group] if group else c)[name] = value
    return c


BAD = [  # (overrides, a part of the one-line message)
    ({"lr": -1e-3}, "config.lr=-0.001 must be > 0"),
    ({"weight_decay": -1e-4}, "config.weight_decay=-0.0001 must be >= 0"),
    ({"loss.label_smoothing": 1.0}, "config.loss.label_smoothing=1.0 must be in [0, 1)"),
    ({"loss.label_smoothing": -0.1}, "config.loss.label_smoothing=-0.1 must be in [0, 1)"),
    ({"batch_size": 0}, "config.batch_size=0 must be > 0"),
    ({"batch_size": -8}, "config.batch_size=-8 must be > 0"),
    ({"image_size": 0}, "config.image_size=0 must be > 0"),
    ({"top_k": 0}, "config.top_k=0 must be >= 1"),
    ({"resize_size": 12}, "config.resize_size=12 is smaller than config.image_size=16"),
    ({"dataset_name": "cars,sop,cars"}, "config.dataset_name lists cars more than once"),
    ({"knn_eval_names": "sop,sop"}, "config.knn_eval_names lists sop more than once"),
    ({"eval_knns": "vall_knn"}, "config.eval_knns names unknown kNN setup(s) vall_knn"),
    ({"loss.type": "softmax"}, "config.loss.type='softmax' is not one of normface, cosface"),
    ({"sampling_strategy": "x"}, "config.sampling_strategy='x' is not one of round_robin"),
]


@pytest.mark.parametrize("overrides, message", BAD)
def test_bad_field_fails_before_anything_is_written(data_dir, tmp_path, overrides, message):
    workdir = str(tmp_path / "run")
    with pytest.raises(config_checks.ConfigError) as e:
        train_main.main(tiny_config(data_dir, **overrides), workdir)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert not os.path.exists(workdir)  # no config.json, hparams.json, events file


def test_every_problem_in_one_line():
    c = tiny_config("/nonexistent", lr=-1.0, top_k=0, **{"loss.type": "x"})
    errors = config_checks.number_errors(c) + config_checks.name_errors(c)
    assert errors == [
        "config.lr=-1.0 must be > 0",
        "config.top_k=0 must be >= 1",
        "config.loss.type='x' is not one of normface, cosface, arcface",
    ]


def test_types_are_checked():
    # A config file may hold any type (ml_collections checks only overrides of a typed field).
    c = ml_collections.ConfigDict(tiny_config("/d").to_dict(), type_safe=False)
    c.batch_size, c.lr = 8.0, "0.1"
    assert config_checks.number_errors(c) == [
        "config.lr='0.1' must be a finite number > 0",
        "config.batch_size=8.0 must be an integer > 0",
    ]


def test_udon_teacher_dim_types_and_teacherless_eval_domain():
    c = tiny_config("/d")
    c.model.teacher_dim = ("256",)
    c.model.universal_student_dim = (64,)
    c.embedd_to_eval = "universal_student_embedd,teacher_embedd"
    c.dataset_name = "cars"
    assert config_checks.udon_errors(c) == [
        "config.model.teacher_dim=('256',) must be a tuple of positive integers, e.g. (256,)",
        "config.knn_eval_names has sop, which have no teacher (not in config.dataset_name): "
        "drop teacher_embedd from config.embedd_to_eval or evaluate trained domains only",
    ]


def test_missing_shard_is_named(data_dir, tmp_path):
    # sop's train split has 5 shards; with one gone the run used to train on 4 of 5.
    root = str(tmp_path / "data")
    shutil.copytree(data_dir, root, ignore=shutil.ignore_patterns("images"))
    train = os.path.join(root, "tfds", "sop", "train")
    os.remove(os.path.join(train, "sop.train.tfrecord-00002-of-00005"))
    workdir = str(tmp_path / "run")
    with pytest.raises(config_checks.ConfigError, match="sop.train.tfrecord-00002-of-00005"):
        train_main.main(tiny_config(root), workdir)
    assert not os.path.exists(workdir)


def test_missing_info_file_of_evaluated_split_is_named(data_dir, tmp_path):
    root = str(tmp_path / "data")
    shutil.copytree(data_dir, root, ignore=shutil.ignore_patterns("images"))
    os.remove(os.path.join(root, "info_files", "cars", "test.json"))
    c = tiny_config(root, do_final_testing=True)
    assert config_checks.file_errors(c) == [
        f"info file {root}/info_files/cars/test.json does not exist (config.info_files_dir)"
    ]
    assert config_checks.file_errors(tiny_config(root)) == []  # no final test: not read


def test_missing_shard_arithmetic(tmp_path):
    prefix = str(tmp_path / "d.train.tfrecord")
    assert config_checks.missing_shards(prefix) == [prefix]
    for i in (0, 2):
        (tmp_path / f"d.train.tfrecord-0000{i}-of-00003").write_bytes(b"")
    assert config_checks.missing_shards(prefix) == [f"{prefix}-00001-of-00003"]
    (tmp_path / "d.train.tfrecord").write_bytes(b"")
    assert config_checks.missing_shards(prefix) == []


def test_batch_larger_than_a_domain_is_a_warning(data_dir, monkeypatch):
    seen = []
    monkeypatch.setattr(logging, "warning", lambda msg, *a: seen.append(msg % a if a else msg))
    config_checks.check_train_config(tiny_config(data_dir, batch_size=40))
    sizes = config_checks._info_sizes(os.path.join(data_dir, "info_files"), ["cars", "sop"])
    small = [d for d, n in sizes.items() if n < 40]
    assert small and seen == [
        f"config.batch_size=40 is larger than the {sizes[d]} training images of '{d}': "
        "its batches repeat images"
        for d in small
    ]
