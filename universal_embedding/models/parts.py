"""Pieces every ViT backbone family shares (vit.py, siglip_vit.py, dinov2.py, clip_vit.py).

Each helper is called inside a module's `nn.compact` method and names its submodule or
parameter explicitly, so the parameter tree is the caller's: `patch_embedding` makes the
convolution `name`, `stack_blocks` the blocks `{prefix}{i}`. Checkpoints and the weight
mappings in pretrained/ depend on those names; the helpers never add a level of their own.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

LN_EPS = 1e-6  # AugReg, SigLIP and DINOv2 LayerNorm epsilon (CLIP passes its own 1e-5)


def layer_norm(dtype: jnp.dtype, name: str, epsilon: float = LN_EPS) -> nn.LayerNorm:
    """LayerNorm computing in `dtype` with float32 parameters `scale` and `bias`."""
    return nn.LayerNorm(epsilon=epsilon, dtype=dtype, param_dtype=jnp.float32, name=name)


def patch_embedding(
    images: jax.Array,
    patch_size: int,
    features: int,
    dtype: jnp.dtype,
    name: str,
    use_bias: bool = True,
) -> jax.Array:
    """Non-overlapping patch convolution `name` ([B, H, W, C] -> [B, patches, features])."""
    p = patch_size
    x = nn.Conv(
        features,
        (p, p),
        strides=(p, p),
        padding="VALID",
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=jnp.float32,
        name=name,
    )(images.astype(dtype))
    return x.reshape(x.shape[0], -1, features)


def prepend_token(x: jax.Array, token: jax.Array) -> jax.Array:
    """[B, T, D] -> [B, 1 + T, D] with the learned `token` (any shape of D values) first."""
    b, _, d = x.shape
    first = jnp.broadcast_to(token, (b, 1, d)).astype(x.dtype)
    return jnp.concatenate([first, x], axis=1)


def stack_blocks(
    block: type[nn.Module],
    num_layers: int,
    prefix: str,
    remat: bool,
    x: jax.Array,
    seq_lengths: jax.Array | None,
    *fields: Any,
) -> jax.Array:
    """Apply `num_layers` blocks `block(*fields)` named `{prefix}{i}` to (x, seq_lengths).

    `remat=True` wraps the block in `nn.remat` (gradient checkpointing): the same parameter
    tree and the same gradients, the activations recomputed in the backward pass.
    """
    cls = nn.remat(block) if remat else block
    for i in range(num_layers):
        x = cls(*fields, name=f"{prefix}{i}")(x, seq_lengths)
    return x


class BlockFields(nn.Module):
    """The fields every transformer block shares; a family's block adds its own after them."""

    num_heads: int
    mlp_dim: int
    dtype: jnp.dtype = jnp.float32
    attention: str = "xla"  # attention implementation (models/attention.py)


class BackboneFields(nn.Module):
    """The sizes and compute settings every ViT backbone shares; a family adds its own fields
    (`gelu_approximate`, `num_registers`, `remat`, ...) after these, in this order."""

    hidden_size: int
    num_heads: int
    mlp_dim: int
    num_layers: int
    patch_size: int
    dtype: jnp.dtype = jnp.float32
    attention: str = "xla"
    pad_multiple: int = 1  # pad the token count to a multiple of this (cuDNN attention)
