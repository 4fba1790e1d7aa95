"""The training method's parts: per-domain train steps, domain sampler, checks.

The trainer asks this module for its per-domain train steps and its domain sampler: UDON's
(teacher + student steps, dynamic sampler) for a UDON model, else the standard ones (one step
per head, a fixed schedule).
"""

from __future__ import annotations

import functools

import jax
import ml_collections
import numpy as np

from universal_embedding.models import udon as udon_model
from universal_embedding.train import (
    dynamic_sampler,
    plan,
    samplers,
    steps,
    udon_losses,
    udon_steps,
)


def is_udon(config: ml_collections.ConfigDict) -> bool:
    return udon_model.is_udon(config.model_class)


def check_config(config: ml_collections.ConfigDict) -> None:
    """UDON needs separate heads and the same domain order for training and evaluation."""
    if not is_udon(config):
        return
    if config.classifier != "separate":
        raise ValueError(
            f"UDON trains a head per domain: set config.classifier='separate' "
            f"(got {config.classifier!r})."
        )


def train_steps(config, tplan: plan.TrainPlan, model, tx, mesh, pixel_stats=None) -> dict:
    """{head name: step(state, batch)} for the standard model, {domain: step} for UDON;
    `pixel_stats` (mean, std): the steps take uint8 images and normalise them on the device."""
    train_backbone = config.frozen_epochs != -1
    if is_udon(config):
        cfg = udon_losses.UdonLossConfig.from_config(config.loss)
        return udon_steps.make_udon_train_steps(
            model, tx, mesh, cfg, train_backbone=train_backbone, pixel_stats=pixel_stats
        )
    step = steps.make_train_step(  # one program for every head, the head index traced
        model,
        tx,
        mesh,
        loss_config=config.loss,
        train_backbone=train_backbone,
        pixel_stats=pixel_stats,
    )
    return {
        head: functools.partial(_with_head, step, steps.head_index(model, head, mesh))
        for head in tplan.classes_per_head
    }


def _with_head(step, head: jax.Array, state, batch):
    """step(state, batch, head) with the head index bound."""
    return step(state, batch, head)


def initial_weights(config, tplan: plan.TrainPlan, schedule: np.ndarray) -> np.ndarray:
    """Weights the initial schedule stands for: 1/D for round robin, else its step shares."""
    n = len(tplan.domains)
    if config.sampling_strategy == "round_robin":
        return np.full(n, 1.0 / n)
    return np.bincount(schedule, minlength=n) / len(schedule)


def make_sampler(config, tplan: plan.TrainPlan, schedule: np.ndarray):
    """UDON's dynamic sampler when config.update_sampler is on, else the fixed schedule."""
    n = len(tplan.domains)
    if not (is_udon(config) and config.update_sampler):  # UDON configs declare update_sampler
        return samplers.StaticSampler(schedule, n)
    return dynamic_sampler.DynamicSampler(
        tplan.domains,
        schedule,
        initial_weights(config, tplan, schedule),
        every=config.update_sampler_every_steps,
        logit_type=config.update_sampler_logit_type,
        batch_size=tplan.batch_size,
    )
