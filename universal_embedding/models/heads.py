"""Cosine classifier heads: logits are cosines between the embedding and class weights."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

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
    def __call__(self, x: jax.Array, weights_only: bool = False) -> jax.Array:
        """Cosines [B, num_classes]; with `weights_only` the normalised kernel [D, num_classes]."""
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (x.shape[-1], self.num_classes),
            jnp.float32,
        )
        weights = l2_normalize(kernel, axis=0)
        return weights if weights_only else l2_normalize(x) @ weights


class CosineHeads(nn.Module):
    """One cosine head per name ('separate': a domain each; 'joint': one over all classes)."""

    classes_per_head: Sequence[tuple[str, int]]

    @nn.compact
    def __call__(
        self, x: jax.Array, names: Sequence[str], concatenate: bool = False
    ) -> dict[str, jax.Array] | jax.Array:
        """{name: cosines}, or with `concatenate` the cosines of all `names` side by side
        [B, sum of their classes] from one matmul against the concatenated class weights."""
        sizes = dict(self.classes_per_head)
        for name in names:
            if name not in sizes:
                raise ValueError(f"Unknown head {name!r}; the model has heads {sorted(sizes)}.")
        heads = {name: CosineHead(sizes[name], name=name) for name in names}
        if not concatenate:
            return {name: head(x) for name, head in heads.items()}
        weights = [head(x, weights_only=True) for head in heads.values()]
        return l2_normalize(x) @ jnp.concatenate(weights, axis=1)


def head_classes(
    classes_per_head: Sequence[tuple[str, int]], head: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(offset, mask) of head number `head` (may be traced) among the concatenated classes.

    offset: int32 scalar, the head's first column; mask: bool [sum of classes], True on the
    head's columns. Ordered as `classes_per_head`.
    """
    sizes = np.asarray([int(c) for _, c in classes_per_head], np.int32)
    ends = np.cumsum(sizes, dtype=np.int32)
    start, end = jnp.asarray(ends - sizes)[head], jnp.asarray(ends)[head]
    columns = jnp.arange(int(ends[-1]), dtype=jnp.int32)
    return start, (columns >= start) & (columns < end)
