"""Adam with decoupled weight decay, two learning rates and a frozen backbone phase.

params['heads'] (and UDON's params['projections']) train with `lr`; params['backbone'] and
params['projection'] with lr * backbone_lr_multiplier, and get exactly no update (bit-identical
parameters) for the first `frozen_epochs` epochs (-1: for all of training). As in the paper's
"lr 0" freeze, Adam's moments of the frozen part keep accumulating meanwhile. The settings are
an `OptimizerSettings` (the config's optimiser fields, built by the entry point).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

HEADS = "heads"
BACKBONE = "backbone"  # label of both params['backbone'] and params['projection']
_BACKBONE_KEYS = ("backbone", "projection")
# UDON's teacher and student projections train with the heads from step 0 (params_early_train).
UDON_PROJECTIONS = "projections"
SCHEDULES = ("constant", "warmup_cosine")


@dataclasses.dataclass(frozen=True)
class OptimizerSettings:
    """The config's optimiser fields (configs/base.py, "optimiser")."""

    lr: float  # heads
    backbone_lr_multiplier: float  # backbone and projection: lr * this
    weight_decay: float  # decoupled
    adam_b1: float
    adam_b2: float
    lr_schedule: str  # one of SCHEDULES
    warmup_steps: int
    frozen_epochs: float  # -1: frozen for all of training
    grad_clip_norm: float  # 0: off

    @property
    def trains_backbone(self) -> bool:
        """False when the backbone is frozen for all of training (frozen_epochs == -1)."""
        return self.frozen_epochs != -1


def param_labels(params: Mapping[str, Any]) -> dict[str, Any]:
    """Tree of 'heads' / 'backbone' labels matching `params` (top-level key decides)."""
    labels = {}
    for key, sub in params.items():
        if key in (HEADS, UDON_PROJECTIONS):
            label = HEADS
        elif key in _BACKBONE_KEYS:
            label = BACKBONE
        else:
            raise ValueError(
                f"Unexpected top-level parameter group '{key}'; the optimiser knows "
                f"'heads', 'backbone', 'projection' and UDON's 'projections'."
            )
        labels[key] = jax.tree.map(lambda _, lab=label: lab, sub)
    return labels


def frozen_steps(frozen_epochs: float, steps_per_epoch: int, total_steps: int) -> int:
    """Number of leading steps with a frozen backbone (all steps when frozen_epochs == -1)."""
    epochs = frozen_epochs
    if epochs == -1:
        return total_steps
    if epochs < 0:
        raise ValueError(f"config.frozen_epochs must be >= 0 or -1 (always); got {epochs}.")
    return int(round(epochs * steps_per_epoch))


def head_schedule(opt: OptimizerSettings, total_steps: int) -> optax.Schedule:
    """Learning rate of the heads per step: constant (paper) or linear warmup + cosine."""
    lr = opt.lr
    if opt.lr_schedule == "constant":
        return optax.constant_schedule(lr)
    if opt.lr_schedule == "warmup_cosine":
        warmup = opt.warmup_steps
        return optax.warmup_cosine_decay_schedule(
            0.0, lr, warmup, max(total_steps, warmup + 1), end_value=0.0
        )
    raise ValueError(f"Unknown config.lr_schedule '{opt.lr_schedule}'. Valid: {SCHEDULES}.")


def lr_schedules(
    opt: OptimizerSettings, steps_per_epoch: int, total_steps: int
) -> dict[str, optax.Schedule]:
    """{'heads': schedule, 'backbone': schedule}; the backbone one is 0 while frozen."""
    heads = head_schedule(opt, total_steps)
    mult = opt.backbone_lr_multiplier
    n_frozen = frozen_steps(opt.frozen_epochs, steps_per_epoch, total_steps)

    def backbone(step):
        return jnp.where(step < n_frozen, 0.0, heads(step) * mult)

    return {HEADS: heads, BACKBONE: backbone}


def learning_rates(schedules: Mapping[str, optax.Schedule], step: int) -> dict[str, float]:
    """Current learning rates for logging: {'lr/heads': ..., 'lr/backbone': ...} (host floats)."""
    return {f"lr/{name}": float(fn(step)) for name, fn in schedules.items()}


class FreezeState(NamedTuple):
    count: jax.Array
    inner: Any


def freeze_for(inner: optax.GradientTransformation, num_steps: int) -> optax.GradientTransformation:
    """Run `inner` but emit -0.0 updates for its first `num_steps` updates.

    -0.0 is the one value with p + u == p bit for bit for every p (also p = -0.0), so frozen
    parameters stay bit-identical. `inner`'s state still advances (Adam moments accumulate).
    """

    def init_fn(params):
        return FreezeState(jnp.zeros([], jnp.int32), inner.init(params))

    def update_fn(updates, state, params=None):
        new_updates, inner_state = inner.update(updates, state.inner, params)
        frozen = state.count < num_steps
        new_updates = jax.tree.map(
            lambda u: jnp.where(frozen, jnp.asarray(-0.0, u.dtype), u), new_updates
        )
        return new_updates, FreezeState(optax.safe_increment(state.count), inner_state)

    return optax.GradientTransformation(init_fn, update_fn)


def _adamw(opt: OptimizerSettings, schedule: Callable) -> optax.GradientTransformation:
    return optax.adamw(schedule, b1=opt.adam_b1, b2=opt.adam_b2, weight_decay=opt.weight_decay)


def make_optimizer(
    opt: OptimizerSettings, steps_per_epoch: int, total_steps: int
) -> optax.GradientTransformation:
    """The training optimiser (see module docstring); apply with optax.apply_updates."""
    if steps_per_epoch <= 0 or total_steps <= 0:
        raise ValueError(
            f"steps_per_epoch ({steps_per_epoch}) and total_steps ({total_steps}) must be > 0."
        )
    schedules = lr_schedules(opt, steps_per_epoch, total_steps)
    n_frozen = frozen_steps(opt.frozen_epochs, steps_per_epoch, total_steps)
    tx = optax.multi_transform(
        {
            HEADS: _adamw(opt, schedules[HEADS]),
            BACKBONE: freeze_for(_adamw(opt, schedules[BACKBONE]), n_frozen),
        },
        param_labels,
    )
    return clip_then(tx, opt.grad_clip_norm)


def clip_then(inner: optax.GradientTransformation, max_norm: float) -> optax.GradientTransformation:
    """`inner` applied to the gradients clipped to global norm `max_norm` (<= 0: `inner`).

    The state is `inner`'s alone (clipping keeps none), so a run checkpointed without clipping
    resumes with config.grad_clip_norm set, as the advice after a NaN stop says.
    """
    if max_norm <= 0:
        return inner
    clip = optax.clip_by_global_norm(max_norm)

    def update_fn(updates, state, params=None):
        clipped, _ = clip.update(updates, clip.init(updates), params)
        return inner.update(clipped, state, params)

    return optax.GradientTransformation(inner.init, update_fn)
