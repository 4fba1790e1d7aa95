"""The trainer's typed values, built once from a config (settings.train_settings and the parts
in train_settings.py): every field read, UDON's parts only for a UDON model, bad configs named."""

from __future__ import annotations

import ml_collections
import pytest

from universal_embedding import settings, train_settings
from universal_embedding.configs import config_train_udon, tiny
from universal_embedding.train import losses, method, udon_losses


def test_a_standard_config_gives_every_part():
    c = tiny.get_config("data_dir=/d")
    c.sampling_strategy, c.specialist_top_steps = "specialist_top_steps", "0.75, 0.25"
    c.wandb.enabled, c.wandb.project = True, "p"
    ts = settings.train_settings(c)
    p = ts.plan
    assert (p.domains, p.info_files_dir, p.batch_size, p.classifier) == (
        ("cars", "sop"),
        "/d/info_files",
        8,
        "joint",
    )
    assert (p.num_training_steps, p.frozen_epochs, p.checkpoint_steps) == (6, 0.3, 2)
    assert (p.log_eval_steps, p.log_summary_steps, p.num_epochs) == (-1, 1, 7.0)
    o = ts.optimizer
    assert (o.lr, o.backbone_lr_multiplier, o.weight_decay, o.frozen_epochs) == (
        1e-2,
        1.0,
        1e-6,
        0.3,
    )
    assert (o.adam_b1, o.adam_b2, o.lr_schedule, o.warmup_steps, o.grad_clip_norm) == (
        0.9,
        0.999,
        "constant",
        0,
        0.0,
    )
    assert o.trains_backbone
    assert ts.method == method.MethodSettings(
        loss=losses.LossSettings("normface", 16.0, 0.0, 0.0),
        sampling=train_settings.sampling_settings(c),
    )
    assert ts.method.sampling.shares == (0.75, 0.25) and ts.method.sampling.seed == 0
    assert not ts.method.is_udon and ts.method.dynamic_sampler is None
    d = ts.data
    assert (d.tfds_dir, d.image_size, d.resize_size, d.shuffle_buffer_size) == (
        "/d/tfds",
        16,
        20,
        64,
    )
    assert (d.reduced_decode, d.threads, d.seed) == (False, 0, 0)
    r = ts.run
    assert (r.max_checkpoints_to_keep, r.stop_after_steps, r.do_final_testing) == (10, 0, False)
    assert r.wandb == {"enabled": True, "project": "p", "group": "", "entity": "", "name": ""}
    assert ts.config_dict == c.to_dict()


def test_frozen_for_all_of_training_skips_the_backbone():
    c = tiny.get_config()
    c.frozen_epochs = -1
    assert not train_settings.optimizer_settings(c).trains_backbone


def test_references_are_resolved_once():
    c = tiny.get_config()
    c.num_training_steps = ml_collections.FieldReference(4)
    c.checkpoint_steps = c.get_ref("num_training_steps")
    ts = settings.train_settings(c)
    assert (ts.plan.num_training_steps, ts.plan.checkpoint_steps) == (4, 4)
    assert ts.config_dict["checkpoint_steps"] == 4


def _udon(**overrides) -> ml_collections.ConfigDict:
    c = config_train_udon.add_udon_fields(tiny.get_config())
    c.model_class = "udon_vit_with_embedding"
    for key, value in overrides.items():
        c[key] = value
    return c


def test_a_udon_config_gives_its_loss_terms_and_dynamic_sampler():
    c = _udon(update_sampler_every_steps=3, update_sampler_logit_type="universal_student")
    c.loss.distill_udon_logits_temperature.teacher = 0.05
    c.loss.classif_losses_on = " teacher , "
    ms = settings.train_settings(c).method
    assert ms.is_udon
    assert ms.udon_loss == udon_losses.UdonLossConfig(
        classif_losses_on=("teacher",), temperature_teacher=0.05
    )
    assert ms.dynamic_sampler == method.DynamicSamplerSettings(3, "universal_student")
    c.update_sampler = False
    assert train_settings.method_settings(c).dynamic_sampler is None


def test_udon_configs_the_trainer_cannot_run_are_named():
    with pytest.raises(ValueError, match="classifier='separate' \\(got 'joint'\\)"):
        train_settings.method_settings(_udon(classifier="joint"))
    c = _udon()
    c.loss.classif_losses_on = "teacher,student"
    with pytest.raises(ValueError, match="classif_losses_on='teacher,student': unknown"):
        train_settings.method_settings(c)
    c = _udon()
    c.loss.classif_losses_on, c.loss.distill_udon_logits = "", False
    c.loss.distill_udon_batch_simils = False
    with pytest.raises(ValueError, match="every loss term is off"):
        train_settings.method_settings(c)


def test_unknown_training_domain_fails_before_any_file_is_read():
    c = tiny.get_config("data_dir=/nonexistent")
    c.dataset_name = "cars,toys"
    with pytest.raises(ValueError, match="toys"):
        train_settings.plan_settings(c)
