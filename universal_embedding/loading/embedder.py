"""Jitted embedding functions: params + images -> L2-normalised descriptors on every device."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np

from universal_embedding.distributed import mesh as mesh_lib

EMBEDDINGS = ("projected", "backbone_out")
EmbedFn = Callable[[np.ndarray], np.ndarray]


def make_embed_fn(
    model: flax.linen.Module, key: str = "projected"
) -> Callable[[Any, jax.Array], jax.Array]:
    """jit fn(params, images) -> [B, d] float32 descriptors `key` ('projected' | 'backbone_out').

    Output keeps the batch sharding of `images`; wrap with `mesh.host_embed_fn` for numpy I/O.
    """
    if key not in EMBEDDINGS:
        raise ValueError(f"Unknown embedding '{key}'; use 'projected' or 'backbone_out'.")

    def embed(params, images):
        out = model.apply({"params": params}, images, train=False, head=None)
        return out[key].astype(jnp.float32)

    return jax.jit(embed)


@functools.lru_cache(maxsize=4)
def cached_embed_fn(model, key: str):
    """One jit function per (model definition, output): repeated runs reuse its compilation."""
    return make_embed_fn(model, key)


def make_embedder(model, params: Any, key: str, mesh=None) -> EmbedFn:
    """A data-sharded embed_fn(local images) -> global [B, d] float32 numpy, params replicated."""
    mesh = mesh_lib.make_mesh() if mesh is None else mesh
    params = jax.device_put(jax.device_get(params), mesh_lib.replicated(mesh))
    return mesh_lib.host_embed_fn(cached_embed_fn(model, key), params, mesh)
