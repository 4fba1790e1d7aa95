"""Training arithmetic from the info files present (train/plan.py) and the training configs."""

from __future__ import annotations

import numpy as np
import pytest

from universal_embedding import train_settings
from universal_embedding.configs import base, config_train_clip_vit, config_train_vit, demo
from universal_embedding.train import plan, samplers


@pytest.fixture
def info_dir(tmp_path, write_info_files):
    root = str(tmp_path)
    write_info_files(
        root,
        {
            "cars/train": [0, 1, 2, 2, 1] * 20,  # 100 images, 3 classes
            "sop/train": [4, 0] * 35,  # 70 images, 5 classes (max label 4)
            "met/train": [0, [1, 6]] * 15,  # 30 images, 7 classes (max of a label list)
        },
    )
    return root


def _config(info_dir: str, **overrides):
    c = base.get_config()
    c.info_files_dir = info_dir
    c.dataset_name = "cars,sop,met"
    c.batch_size = 16
    for k, v in overrides.items():
        setattr(c, k, v)
    return c


def make_plan(config) -> plan.TrainPlan:
    """The plan of `config`, through the entry point's PlanSettings."""
    return plan.make_plan(train_settings.plan_settings(config))


def test_steps_per_epoch_and_classes_come_from_info_files(info_dir):
    p = make_plan(_config(info_dir, num_epochs=3.0, frozen_epochs=1.5, log_eval_steps=-1))
    assert p.train_sizes == (100, 70, 30)
    assert p.num_classes == (3, 5, 7)
    assert p.steps_per_epoch == 200 // 16 == 12
    assert p.total_steps == 36
    assert p.frozen_steps == 18
    assert p.log_eval_steps == 12  # -1: every epoch
    assert p.classes_per_head == {"cars": 3, "sop": 5, "met": 7}
    assert p.label_offsets == (0, 0, 0)
    assert [p.head_of(d) for d in p.domains] == ["cars", "sop", "met"]


def test_negative_intervals_are_times_per_epoch(info_dir):
    """-N: N times per epoch (the original's *_steps_frequency fields); 12 steps per epoch."""
    c = _config(info_dir, log_eval_steps=-4, checkpoint_steps=-5, log_summary_steps=-3)
    p = make_plan(c)
    assert (p.log_eval_steps, p.checkpoint_steps, p.log_summary_steps) == (3, 2, 4)
    p = make_plan(_config(info_dir, checkpoint_steps=0, log_summary_steps=0))
    assert (p.checkpoint_steps, p.log_summary_steps) == (12, 1)
    p = make_plan(_config(info_dir, checkpoint_steps=7, log_summary_steps=100))
    assert (p.checkpoint_steps, p.log_summary_steps) == (7, 100)


def test_joint_head_offsets_and_overrides(info_dir):
    c = _config(info_dir, classifier="joint", num_training_steps=7, frozen_epochs=-1.0)
    c.log_eval_steps = 5
    p = make_plan(c)
    assert p.classes_per_head == {"joint": 15}
    assert p.label_offsets == (0, 3, 8)
    assert p.head_of("met") == "joint"
    assert p.total_steps == 7 and p.frozen_steps == 7 and p.log_eval_steps == 5


def test_schedule_and_stream_positions(info_dir):
    c = _config(info_dir, num_training_steps=20, sampling_strategy="dataset_size")
    p = make_plan(c)
    schedule = plan.domain_schedule(train_settings.sampling_settings(c), p)
    # 100:70:30 of 20 steps = 10, 7, 3 exactly; seeded order.
    assert np.bincount(schedule, minlength=3).tolist() == [10, 7, 3]
    np.testing.assert_array_equal(
        schedule, plan.domain_schedule(train_settings.sampling_settings(c), p)
    )
    at = 9
    expected = [int(np.sum(schedule[:at] == i)) for i in range(3)]
    assert samplers.domain_positions(schedule, at, 3).tolist() == expected


def test_plan_errors_speak_to_the_user(info_dir):
    with pytest.raises(ValueError, match="larger than all training sets"):
        make_plan(_config(info_dir, batch_size=1024))
    with pytest.raises(FileNotFoundError, match="inat"):
        make_plan(_config(info_dir, dataset_name="cars,inat"))
    with pytest.raises(ValueError, match="classifier"):
        make_plan(_config(info_dir, classifier="both"))


def test_paper_runs_from_argument_strings():
    c = config_train_clip_vit.get_config("classifier=joint,sampling=dataset_size")
    assert (c.classifier, c.sampling_strategy) == ("joint", "dataset_size")
    assert c.model_class == "clip_vit_with_embedding" and c.pretrained_ckpt.endswith("vit_b16.npy")
    v = config_train_vit.get_config("classifier=separate,sampling=round_robin")
    assert (v.classifier, v.sampling_strategy, v.model_type) == ("separate", "round_robin", "B/16")
    assert "B_16-i21k" in v.pretrained_ckpt and v.model_class == "vit_with_embedding"
    assert config_train_vit.get_config().classifier == "separate"
    assert (v.batch_size, v.lr, v.backbone_lr_multiplier, v.frozen_epochs) == (128, 1e-3, 0.01, 2)
    with pytest.raises(ValueError, match="classifier"):
        config_train_vit.get_config("classifier=both")
    with pytest.raises(ValueError, match="Valid"):
        config_train_clip_vit.get_config("sampler=round_robin")


def test_demo_config_is_a_tiny_random_init_vit():
    c = demo.get_config("data_dir=/x,dtype=bfloat16")
    assert c.info_files_dir == "/x/info_files" and c.train_dataset_dir == "/x/tfds"
    assert c.model.dtype == "bfloat16" and c.pretrained_ckpt == "" and c.frozen_epochs == 0
    assert c.image_size <= 64 and c.model.hidden_size <= 128
    assert c.batch_size % 2 == 0 and c.eval_batch_size % 2 == 0  # two test devices
