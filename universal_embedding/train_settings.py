"""The trainer's parts of a config as typed values (the entry layer, beside settings.py).

`settings.train_settings(config)` gathers these into one `train.settings.TrainSettings`; tests
and tools that need one part (a plan, an optimiser) build just that part here. Every function
reads the config once; nothing below the entry points sees the config.
"""

from __future__ import annotations

import ml_collections

from universal_embedding.data import registry
from universal_embedding.models import udon as udon_model
from universal_embedding.train import losses, method, optimizers, plan, samplers, udon_losses
from universal_embedding.train.settings import RunSettings, TrainData

Config = ml_collections.ConfigDict


def optimizer_settings(config: Config) -> optimizers.OptimizerSettings:
    """lr, backbone_lr_multiplier, weight_decay, adam_b1/b2, lr_schedule, warmup_steps,
    frozen_epochs and grad_clip_norm."""
    return optimizers.OptimizerSettings(
        lr=float(config.lr),
        backbone_lr_multiplier=float(config.backbone_lr_multiplier),
        weight_decay=float(config.weight_decay),
        adam_b1=float(config.adam_b1),
        adam_b2=float(config.adam_b2),
        lr_schedule=str(config.lr_schedule),
        warmup_steps=int(config.warmup_steps),
        frozen_epochs=float(config.frozen_epochs),
        grad_clip_norm=float(config.grad_clip_norm),
    )


def plan_settings(config: Config) -> plan.PlanSettings:
    """dataset_name (registered domains: register_domains first), info_files_dir, batch_size,
    num_epochs / num_training_steps, classifier, frozen_epochs and the step intervals."""
    return plan.PlanSettings(
        domains=registry.parse_domain_names(config.dataset_name),
        info_files_dir=config.info_files_dir,
        batch_size=int(config.batch_size),
        num_epochs=float(config.num_epochs),
        num_training_steps=int(config.num_training_steps),
        classifier=config.classifier,
        frozen_epochs=float(config.frozen_epochs),
        log_eval_steps=int(config.log_eval_steps),
        checkpoint_steps=int(config.checkpoint_steps),
        log_summary_steps=int(config.log_summary_steps),
    )


def sampling_settings(config: Config) -> plan.SamplingSettings:
    """sampling_strategy, its specialist_top_steps shares and the rng_seed of the schedule."""
    strategy = config.sampling_strategy
    shares = None
    if strategy == "specialist_top_steps":
        shares = tuple(samplers.parse_shares(config.specialist_top_steps))
    return plan.SamplingSettings(strategy=strategy, shares=shares, seed=int(config.rng_seed))


def loss_settings(loss: Config) -> losses.LossSettings:
    """config.loss: type, scale, margin, label_smoothing."""
    return losses.LossSettings(
        loss_type=loss.type,
        scale=float(loss.scale),
        margin=float(loss.margin),
        label_smoothing=float(loss.label_smoothing),
    )


def udon_loss(loss: Config) -> udon_losses.UdonLossConfig:
    """UDON's fields of config.loss (configs/config_train_udon.py lists every one)."""
    on = tuple(x.strip() for x in loss.classif_losses_on.split(",") if x.strip())
    temps = loss.distill_udon_logits_temperature
    return udon_losses.UdonLossConfig(
        classif_losses_on=on,
        distill_udon_logits=loss.distill_udon_logits,
        temperature_teacher=temps.teacher,
        temperature_student=temps.universal_student,
        distill_udon_batch_simils=loss.distill_udon_batch_simils,
        distill_udon_simils_groups=loss.distill_udon_simils_groups,
        classif_udon_teacher_weight=loss.classif_udon_teacher_weight,
        classif_udon_universal_student_weight=loss.classif_udon_universal_student_weight,
        distill_udon_logits_weight=loss.distill_udon_logits_weight,
        distill_udon_simils_weight=loss.distill_udon_simils_weight,
        distill_grads_to_backbone=loss.distill_grads_to_backbone,
        loss_type=loss.type,
        scale=loss.scale,
        margin=loss.margin,
        label_smoothing=loss.label_smoothing,
    )


def method_settings(config: Config) -> method.MethodSettings:
    """The loss and sampling; for a UDON model_class also UDON's loss terms and, when
    update_sampler is on, its dynamic sampler (UDON trains a head per domain: separate)."""
    loss, sampling = loss_settings(config.loss), sampling_settings(config)
    if not udon_model.is_udon(config.model_class):
        return method.MethodSettings(loss=loss, sampling=sampling)
    if config.classifier != "separate":
        raise ValueError(
            f"UDON trains a head per domain: set config.classifier='separate' "
            f"(got {config.classifier!r})."
        )
    dynamic = None
    if config.update_sampler:  # UDON configs declare update_sampler
        dynamic = method.DynamicSamplerSettings(
            every=config.update_sampler_every_steps,
            logit_type=config.update_sampler_logit_type,
            window=str(config.sampler_window),
            threefry_partitionable=bool(config.sampler_threefry_partitionable),
        )
    return method.MethodSettings(loss, sampling, udon_loss(config.loss), dynamic)


def train_data(config: Config) -> TrainData:
    """train_dataset_dir, image_size, resize_size, shuffle_buffer_size, reduced_jpeg_decode,
    input_threads and rng_seed (the streams' seeds)."""
    return TrainData(
        tfds_dir=config.train_dataset_dir,
        image_size=int(config.image_size),
        resize_size=int(config.resize_size),
        shuffle_buffer_size=int(config.shuffle_buffer_size),
        reduced_decode=bool(config.reduced_jpeg_decode),
        threads=int(config.input_threads),
        seed=int(config.rng_seed),
    )


def run_settings(config: Config) -> RunSettings:
    """max_checkpoints_to_keep, wandb, stop_after_steps, do_final_testing and
    resume_changed_config (config_changes: set by the entry point, resume_check.py)."""
    return RunSettings(
        max_checkpoints_to_keep=int(config.max_checkpoints_to_keep),
        wandb=config.wandb.to_dict(),
        stop_after_steps=int(config.stop_after_steps),
        do_final_testing=bool(config.do_final_testing),
        resume_changed_config=bool(config.get("resume_changed_config", False)),
    )
