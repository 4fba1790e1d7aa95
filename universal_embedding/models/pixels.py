"""Pixel normalisation on the device: uint8 batches from the input pipeline -> model inputs."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

PixelStats = tuple[Sequence[float], Sequence[float]]  # (mean, std) per RGB channel, [0, 1] scale


def normalize_pixels(images: jax.Array, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """Pixels in [0, 255] (any dtype) -> float32 (x / 255 - mean) / std, per RGB channel.

    Same constants and formula as the host pipeline's normalisation (x * scale - offset).
    """
    scale = np.array([1.0 / (255.0 * s) for s in std], np.float32)
    offset = np.array([m / s for m, s in zip(mean, std, strict=True)], np.float32)
    return images.astype(jnp.float32) * scale - offset


def model_input(images: jax.Array, pixel_stats: PixelStats | None) -> jax.Array:
    """Integer (uint8) images normalised with pixel_stats; float images (already normalised on
    the host) as they are. Called inside the jitted train steps."""
    if not jnp.issubdtype(images.dtype, jnp.integer):
        return images
    if pixel_stats is None:
        raise ValueError(
            "The train step got integer (uint8) images but no pixel_stats: pass "
            "pixel_stats=normalization.mean_std(name) or feed normalised float images."
        )
    return normalize_pixels(images, *pixel_stats)
