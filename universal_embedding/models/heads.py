"""Cosine classifier heads: logits are cosines between the embedding and class weights."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

EPS = 1e-12


def l2_normalize(x: jax.Array, axis: int = -1) -> jax.Array:
    """x / ||x|| along `axis` (float32; zero vectors stay zero)."""
    x = x.astype(jnp.float32)
    norm = jnp.sqrt(jnp.sum(x * x, axis=axis, keepdims=True))
    return x / jnp.maximum(norm, EPS)


class CosineHead(nn.Module):
    """Bias-free Dense whose kernel columns (one per class) are divided by their norms."""

    num_classes: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (x.shape[-1], self.num_classes),
            jnp.float32,
        )
        return l2_normalize(x) @ l2_normalize(kernel, axis=0)


class CosineHeads(nn.Module):
    """One cosine head per name ('separate': a domain each; 'joint': one over all classes)."""

    classes_per_head: Sequence[tuple[str, int]]

    @nn.compact
    def __call__(self, x: jax.Array, names: Sequence[str]) -> dict[str, jax.Array]:
        sizes = dict(self.classes_per_head)
        out = {}
        for name in names:
            if name not in sizes:
                raise ValueError(f"Unknown head {name!r}; the model has heads {sorted(sizes)}.")
            out[name] = CosineHead(sizes[name], name=name)(x)
        return out
