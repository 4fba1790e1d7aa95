"""OpenAI CLIP visual tower with parameter names that follow the OpenAI state-dict keys.

Param tree (OpenAI key in brackets):
`conv1/kernel` [p, p, 3, D] (visual.conv1.weight, no bias), `class_embedding` [D],
`positional_embedding` [tokens, D], `ln_pre`, `transformer/resblocks_{i}/{ln_1,
attn/{query,key,value,out}, ln_2, mlp/{c_fc,c_proj}}` (visual.transformer.resblocks.{i}...;
the fused attn.in_proj_* is split into query/key/value), `ln_post`.
`visual.proj` is not part of the backbone: the embedding model's projection replaces it.
CLIP uses LayerNorm eps 1e-5 and quick-GELU x * sigmoid(1.702 x). `remat=True` recomputes each
residual block in the backward pass (`nn.remat`; same parameter tree, same gradients).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from universal_embedding.models import parts
from universal_embedding.models.attention import MultiHeadAttention, pad_tokens

LN_EPS = 1e-5


def quick_gelu(x: jax.Array) -> jax.Array:
    """CLIP's GELU approximation x * sigmoid(1.702 x)."""
    return x * jax.nn.sigmoid(1.702 * x)


def _layer_norm(dtype: jnp.dtype, name: str) -> nn.LayerNorm:
    return parts.layer_norm(dtype, name, LN_EPS)


def _dense(features: int, dtype: jnp.dtype, name: str) -> nn.Dense:
    return nn.Dense(features, dtype=dtype, param_dtype=jnp.float32, name=name)


class Mlp(nn.Module):
    """c_fc -> quick-GELU -> c_proj."""

    mlp_dim: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = quick_gelu(_dense(self.mlp_dim, self.dtype, "c_fc")(x))
        return _dense(x.shape[-1], self.dtype, "c_proj")(y)


class ResidualBlock(parts.BlockFields):
    """Pre-LN residual attention block (OpenAI `ResidualAttentionBlock`)."""

    @nn.compact
    def __call__(self, x: jax.Array, seq_lengths: jax.Array | None) -> jax.Array:
        y = _layer_norm(self.dtype, "ln_1")(x)
        x = x + MultiHeadAttention(self.num_heads, self.dtype, self.attention, name="attn")(
            y, seq_lengths
        )
        y = _layer_norm(self.dtype, "ln_2")(x)
        return x + Mlp(self.mlp_dim, self.dtype, name="mlp")(y)


class Transformer(nn.Module):
    """Stack of residual blocks named resblocks_{i}."""

    num_layers: int
    num_heads: int
    mlp_dim: int
    dtype: jnp.dtype = jnp.float32
    attention: str = "xla"
    remat: bool = False  # recompute each block in the backward pass (gradient checkpointing)

    @nn.compact
    def __call__(self, x: jax.Array, seq_lengths: jax.Array | None) -> jax.Array:
        fields = (self.num_heads, self.mlp_dim, self.dtype, self.attention)
        return parts.stack_blocks(
            ResidualBlock, self.num_layers, "resblocks_", self.remat, x, seq_lengths, *fields
        )


class ClipViT(parts.BackboneFields):
    """CLIP visual tower; returns ln_post(class token) [B, hidden] in float32."""

    remat: bool = False  # gradient checkpointing per residual block

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        d = self.hidden_size
        x = parts.patch_embedding(images, self.patch_size, d, self.dtype, "conv1", use_bias=False)
        scale = d**-0.5
        cls = self.param("class_embedding", nn.initializers.normal(scale), (d,), jnp.float32)
        x = parts.prepend_token(x, cls)
        pos = self.param(
            "positional_embedding", nn.initializers.normal(scale), (x.shape[1], d), jnp.float32
        )
        x = (x + pos[None]).astype(self.dtype)
        x = _layer_norm(self.dtype, "ln_pre")(x)
        x, seq_lengths = pad_tokens(x, self.pad_multiple)
        x = Transformer(
            self.num_layers,
            self.num_heads,
            self.mlp_dim,
            self.dtype,
            self.attention,
            self.remat,
            name="transformer",
        )(x, seq_lengths)
        return _layer_norm(self.dtype, "ln_post")(x[:, 0]).astype(jnp.float32)
