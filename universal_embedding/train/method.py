"""The training method's parts: per-domain train steps, domain sampler.

The trainer asks this module for its per-domain train steps and its domain sampler: UDON's
(teacher + student steps, dynamic sampler) when `MethodSettings.udon_loss` is set (a UDON
model), else the standard ones (one step per head, a fixed schedule).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np

from universal_embedding.train import (
    dynamic_sampler,
    losses,
    plan,
    samplers,
    steps,
    udon_losses,
    udon_steps,
)


@dataclasses.dataclass(frozen=True)
class DynamicSamplerSettings:
    """UDON's update_sampler: redraw the schedule every `every` steps from the `logit_type`
    ('teacher' | 'universal_student') classification losses over the loss `window`
    ('since_update' | 'original'); `threefry_partitionable=False`: the original's draw order
    (train/dynamic_sampler.py)."""

    every: int  # update_sampler_every_steps
    logit_type: str  # update_sampler_logit_type
    window: str = "since_update"  # sampler_window
    threefry_partitionable: bool = True  # sampler_threefry_partitionable


@dataclasses.dataclass(frozen=True)
class MethodSettings:
    """The standard method's loss and the domain sampling; UDON's loss terms (set for a UDON
    model, None otherwise) and its dynamic sampler (None: the fixed schedule)."""

    loss: losses.LossSettings
    sampling: plan.SamplingSettings
    udon_loss: udon_losses.UdonLossConfig | None = None
    dynamic_sampler: DynamicSamplerSettings | None = None

    @property
    def is_udon(self) -> bool:
        return self.udon_loss is not None


def train_steps(
    ms: MethodSettings,
    tplan: plan.TrainPlan,
    model,
    tx,
    mesh,
    *,
    train_backbone: bool,
    pixel_stats=None,
) -> dict:
    """{head name: step(state, batch)} for the standard model, {domain: step} for UDON;
    `train_backbone=False` (frozen for all of training) skips the backbone's backward pass;
    `pixel_stats` (mean, std): the steps take uint8 images and normalise them on the device."""
    if ms.udon_loss is not None:
        return udon_steps.make_udon_train_steps(
            model, tx, mesh, ms.udon_loss, train_backbone=train_backbone, pixel_stats=pixel_stats
        )
    step = steps.make_train_step(  # one program for every head, the head index traced
        model,
        tx,
        mesh,
        loss=ms.loss,
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


def initial_weights(strategy: str, tplan: plan.TrainPlan, schedule: np.ndarray) -> np.ndarray:
    """Weights the initial schedule stands for: 1/D for round robin, else its step shares."""
    n = len(tplan.domains)
    if strategy == "round_robin":
        return np.full(n, 1.0 / n)
    return np.bincount(schedule, minlength=n) / len(schedule)


def make_sampler(ms: MethodSettings, tplan: plan.TrainPlan):
    """UDON's dynamic sampler when it is on, else the fixed schedule of `ms.sampling`."""
    schedule = plan.domain_schedule(ms.sampling, tplan)
    n = len(tplan.domains)
    dyn = ms.dynamic_sampler
    if dyn is None:
        return samplers.StaticSampler(schedule, n)
    return dynamic_sampler.DynamicSampler(
        tplan.domains,
        schedule,
        initial_weights(ms.sampling.strategy, tplan, schedule),
        every=dyn.every,
        logit_type=dyn.logit_type,
        batch_size=tplan.batch_size,
        window=dyn.window,
        summary_every=tplan.log_summary_steps,
        partitionable=dyn.threefry_partitionable,
    )
