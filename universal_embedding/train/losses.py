"""Normalised-softmax losses on cosines (docs/uned-benchmark.md §5): normface, cosface, arcface.

Pure functions of (cosines, labels); the model's cosine heads produce the cosines.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

LOSS_TYPES = ("normface", "cosface", "arcface")


@dataclasses.dataclass(frozen=True)
class LossSettings:
    """The config's classification loss (config.loss: type, scale, margin, label_smoothing)."""

    loss_type: str = "normface"  # one of LOSS_TYPES
    scale: float = 16.0
    margin: float = 0.0
    label_smoothing: float = 0.0


# Keeps sin(theta) = sqrt(1 - cos^2) away from 0 so d/dcos stays finite at cos = +-1.
_SIN_SQ_EPS = 1e-6


def _check_loss_type(loss_type: str) -> None:
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"Unknown loss type '{loss_type}'. Valid types: {', '.join(LOSS_TYPES)}.")


def arcface_target(cosines: jax.Array, margin: float) -> jax.Array:
    """cos(theta + m) for every entry, finite with finite gradients for cos in [-1, 1].

    Uses cos(t+m) = cos t cos m - sin t sin m with sin t = sqrt(max(1 - cos^2, eps)).
    Where theta + m would pass pi (cos < cos(pi - m)) the curve is continued linearly as
    cos - m sin(m) so the target logit stays monotonic in theta (the usual safe form).
    """
    c = jnp.clip(cosines, -1.0, 1.0)
    sin = jnp.sqrt(jnp.maximum(1.0 - c * c, _SIN_SQ_EPS))
    shifted = c * math.cos(margin) - sin * math.sin(margin)
    threshold = math.cos(math.pi - margin)
    fallback = c - math.sin(math.pi - margin) * margin
    return jnp.where(c > threshold, shifted, fallback)


def margin_logits(
    cosines: jax.Array, labels: jax.Array, *, loss_type: str = "normface", margin: float = 0.0
) -> jax.Array:
    """Cosines with the margin applied to each row's target entry (unscaled)."""
    _check_loss_type(loss_type)
    cosines = cosines.astype(jnp.float32)
    if loss_type == "normface" or margin == 0.0:
        return cosines
    target = jax.nn.one_hot(labels, cosines.shape[-1], dtype=jnp.bool_)
    if loss_type == "cosface":
        modified = cosines - margin
    else:
        modified = arcface_target(cosines, margin)
    return jnp.where(target, modified, cosines)


def softmax_cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    *,
    label_smoothing: float = 0.0,
    where: jax.Array | None = None,
) -> jax.Array:
    """Per-example cross-entropy; targets (1 - ls) on the label plus ls / C everywhere.

    `where` (bool, broadcastable to `logits`) restricts the softmax to the marked classes
    (C = their number; the label must be one of them): the loss equals that over the marked
    columns alone, and the unmarked columns get exactly zero gradient.
    """
    num_classes = logits.shape[-1]
    targets = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
    if where is None:
        if label_smoothing:
            targets = targets * (1.0 - label_smoothing) + label_smoothing / num_classes
        return -jnp.sum(targets * jax.nn.log_softmax(logits, axis=-1), axis=-1)
    where = jnp.broadcast_to(where, logits.shape)
    if label_smoothing:
        marked = jnp.sum(where, axis=-1, keepdims=True).astype(jnp.float32)
        targets = targets * (1.0 - label_smoothing) + where * (label_smoothing / marked)
    log_probs = jnp.where(where, jax.nn.log_softmax(logits, axis=-1, where=where), 0.0)
    return -jnp.sum(targets * log_probs, axis=-1)


def classification_loss(
    cosines: jax.Array,
    labels: jax.Array,
    *,
    loss_type: str = "normface",
    scale: float = 16.0,
    margin: float = 0.0,
    label_smoothing: float = 0.0,
    where: jax.Array | None = None,
) -> jax.Array:
    """Mean normalised-softmax loss: CE(scale * margin_logits(cosines), labels).

    `where`: the classes the softmax runs over (see softmax_cross_entropy); None = all.
    """
    logits = scale * margin_logits(cosines, labels, loss_type=loss_type, margin=margin)
    per_example = softmax_cross_entropy(
        logits, labels, label_smoothing=label_smoothing, where=where
    )
    return jnp.mean(per_example)


def loss_from_settings(
    cosines: jax.Array, labels: jax.Array, loss: LossSettings, where: jax.Array | None = None
) -> jax.Array:
    """classification_loss with the type, scale, margin and label smoothing of `loss`."""
    return classification_loss(
        cosines,
        labels,
        loss_type=loss.loss_type,
        scale=loss.scale,
        margin=loss.margin,
        label_smoothing=loss.label_smoothing,
        where=where,
    )


def precision_at_1(
    cosines: jax.Array, labels: jax.Array, where: jax.Array | None = None
) -> jax.Array:
    """Fraction of rows whose highest cosine (among the `where` classes) is the label.

    Ties go to the lowest class index.
    """
    if where is not None:
        cosines = jnp.where(where, cosines, -jnp.inf)
    return jnp.mean((jnp.argmax(cosines, axis=-1) == labels).astype(jnp.float32))
