"""The jit-compiled train step over the 1-D device mesh of distributed/mesh.py.

Parameters and optimiser state are replicated; batches are sharded over 'data' along
their first axis (`distributed.mesh.shard_batch`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from universal_embedding.distributed.mesh import replicated
from universal_embedding.models import embedding_model, heads, pixels
from universal_embedding.train import losses

_BACKBONE_KEYS = ("backbone", "projection")


@flax.struct.dataclass
class TrainState:
    """Everything a train step changes: step counter, params, optimiser state."""

    step: jax.Array
    params: Any
    opt_state: Any


def create_train_state(params: Any, tx: optax.GradientTransformation, mesh: Mesh) -> TrainState:
    """TrainState at step 0, replicated over the mesh (params copied, optimiser initialised)."""
    rep = replicated(mesh)
    host_params = jax.device_get(params)
    params = jax.device_put(host_params, rep)
    opt_state = jax.jit(tx.init, out_shardings=rep)(params)
    step = jax.device_put(np.zeros([], np.int32), rep)
    return TrainState(step=step, params=params, opt_state=opt_state)


def _without_backbone_grads(params: Any) -> Any:
    """Params with backbone + projection behind stop_gradient (no backward pass through them)."""
    return {k: jax.lax.stop_gradient(v) if k in _BACKBONE_KEYS else v for k, v in params.items()}


def make_loss_fn(
    model: flax.linen.Module, loss: losses.LossSettings, train_backbone: bool = True
) -> Callable[[Any, jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]:
    """fn(params, images, labels, head) -> (loss, precision@1) of head number `head`.

    All heads' cosines come from one matmul; with several heads, the loss and precision run
    over `head`'s columns only (`labels` index that head's classes and are offset here).
    """
    classes_per_head = tuple(model.classes_per_head)

    def loss_fn(params, images, labels, head):
        used = params if train_backbone else _without_backbone_grads(params)
        out = model.apply({"params": used}, images, train=True, head=embedding_model.ALL_HEADS)
        cosines = out["logits"].astype(jnp.float32)
        columns = None
        if len(classes_per_head) > 1:
            offset, columns = heads.head_classes(classes_per_head, head)
            labels = labels + offset
        value = losses.loss_from_settings(cosines, labels, loss, where=columns)
        return value, losses.precision_at_1(cosines, labels, where=columns)

    return loss_fn


def apply_gradients(state: TrainState, tx: optax.GradientTransformation, grads: dict) -> TrainState:
    """One optimiser update of `state` with `grads`, the step counter advanced."""
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state)


def make_train_step(
    model: flax.linen.Module,
    tx: optax.GradientTransformation,
    mesh: Mesh,
    *,
    loss: losses.LossSettings,
    train_backbone: bool = True,
    pixel_stats: pixels.PixelStats | None = None,
) -> Callable[
    [TrainState, dict[str, jax.Array], jax.Array], tuple[TrainState, dict[str, jax.Array]]
]:
    """jit step(state, batch, head) -> (state, {'loss', 'precision_at_1', 'grad_norm'}).

    One compiled program for every head: `head` is the int32 index of the head to train in
    `model.classes_per_head` (a traced argument, see `head_index`). The cosines of all heads
    come from one matmul; the loss and precision run over the head's columns only (the same
    softmax as that head alone, exactly zero gradient for the other heads, whose parameters
    the optimiser then treats as it treats any parameter with a zero gradient).
    `batch` = {'images': [B,H,W,3], 'labels': [B] int32} sharded by `shard_batch`; images
    are normalised float32, or uint8 normalised here with `pixel_stats` (mean, std); labels
    index `head`'s classes ('joint': already offset). `state` is donated: do not reuse
    the argument. `train_backbone=False` skips the backward pass through backbone and
    projection (their gradients are zero); use it only when they are frozen for all of
    training (frozen_epochs == -1), since Adam moments then stay zero.
    Metrics stay on device (no host sync); convert them when logging.
    """
    rep = replicated(mesh)
    loss_fn = make_loss_fn(model, loss, train_backbone)

    def step_fn(state: TrainState, batch: dict[str, jax.Array], head: jax.Array):
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        images = pixels.model_input(batch["images"], pixel_stats)
        (loss, prec), grads = grad_fn(state.params, images, batch["labels"], head)
        metrics = {"loss": loss, "precision_at_1": prec, "grad_norm": optax.global_norm(grads)}
        return apply_gradients(state, tx, grads), metrics

    return jax.jit(step_fn, out_shardings=(rep, rep), donate_argnums=(0,))


def head_index(model: flax.linen.Module, head: str, mesh: Mesh) -> jax.Array:
    """The `head` argument of the train step for the head called `head` (replicated int32)."""
    names = [name for name, _ in model.classes_per_head]
    if head not in names:
        raise ValueError(f"Unknown head {head!r}; the model has heads {names}.")
    return jax.device_put(np.int32(names.index(head)), replicated(mesh))
