"""ViT backbone whose parameter names are the AugReg checkpoint keys, one to one.

Flattening the params with '/' gives exactly the AugReg `.npz` keys:
`embedding/{kernel,bias}`, `cls`, `Transformer/posembed_input/pos_embedding`,
`Transformer/encoderblock_{i}/{LayerNorm_0, MultiHeadDotProductAttention_1/{query,key,value,out},
LayerNorm_2, MlpBlock_3/{Dense_0,Dense_1}}/...`, `Transformer/encoder_norm/{scale,bias}`.
AugReg ViTs use LayerNorm eps 1e-6 and the GELU of flax's `nn.gelu` default: the tanh
approximation, as Scenic, big_vision and the AugReg training itself compute it (and so the
original UnED code). `gelu_approximate=False` gives the exact (erf) GELU of timm / PyTorch.
`remat=True` recomputes each encoder block's activations in the backward pass (gradient
checkpointing, `nn.remat`): less memory, the same parameter tree and the same gradients.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from universal_embedding.models import parts
from universal_embedding.models.attention import MultiHeadAttention, pad_tokens


def _dense(features: int, dtype: jnp.dtype, name: str) -> nn.Dense:
    return nn.Dense(
        features,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=nn.initializers.xavier_uniform(),
        bias_init=nn.initializers.normal(1e-6),
        name=name,
    )


class MlpBlock(nn.Module):
    """Dense -> GELU (tanh approximation, or exact erf when not approximate) -> Dense."""

    mlp_dim: int
    dtype: jnp.dtype = jnp.float32
    gelu_approximate: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = _dense(self.mlp_dim, self.dtype, "Dense_0")(x)
        y = nn.gelu(y, approximate=self.gelu_approximate)
        return _dense(x.shape[-1], self.dtype, "Dense_1")(y)


class EncoderBlock(parts.BlockFields):
    """Pre-LN transformer block (AugReg names)."""

    gelu_approximate: bool = True

    @nn.compact
    def __call__(self, x: jax.Array, seq_lengths: jax.Array | None) -> jax.Array:
        y = parts.layer_norm(self.dtype, "LayerNorm_0")(x)
        y = MultiHeadAttention(
            self.num_heads, self.dtype, self.attention, name="MultiHeadDotProductAttention_1"
        )(y, seq_lengths)
        x = x + y
        y = parts.layer_norm(self.dtype, "LayerNorm_2")(x)
        mlp = MlpBlock(self.mlp_dim, self.dtype, self.gelu_approximate, name="MlpBlock_3")
        return x + mlp(y)


class PositionEmbedding(nn.Module):
    """Learned 1-D position embedding `pos_embedding` [1, tokens, hidden]."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (1, x.shape[1], x.shape[2])
        return self.param("pos_embedding", nn.initializers.normal(0.02), shape, jnp.float32)


class Encoder(nn.Module):
    """Position embedding, encoder blocks, final LayerNorm (AugReg 'Transformer').

    SigLIP's encoder is this one with `position_embedding=False` (its embedding is added
    before, outside 'Transformer') and `class_token=False` (the final LayerNorm over every
    token, the padding dropped).
    """

    num_layers: int
    num_heads: int
    mlp_dim: int
    dtype: jnp.dtype = jnp.float32
    attention: str = "xla"
    pad_multiple: int = 1
    gelu_approximate: bool = True
    remat: bool = False  # recompute each block in the backward pass (gradient checkpointing)
    position_embedding: bool = True  # add `posembed_input` here
    class_token: bool = True  # return the normed class token, else every normed token

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        tokens = x.shape[1]
        if self.position_embedding:
            pos = PositionEmbedding(name="posembed_input")(x)
            x = (x + pos).astype(self.dtype)
        x, seq_lengths = pad_tokens(x, self.pad_multiple)
        fields = (self.num_heads, self.mlp_dim, self.dtype, self.attention, self.gelu_approximate)
        x = parts.stack_blocks(
            EncoderBlock, self.num_layers, "encoderblock_", self.remat, x, seq_lengths, *fields
        )
        return parts.layer_norm(self.dtype, "encoder_norm")(
            x[:, 0] if self.class_token else x[:, :tokens]
        )


def transformer(backbone: parts.BackboneFields, **options: bool) -> Encoder:
    """The `Transformer` encoder of a ViT or SigLIP backbone, from its fields (sizes, dtype,
    attention, padding, `gelu_approximate`, `remat`); `options` are Encoder's own switches.
    Called inside the backbone's `nn.compact` method, so `Transformer` is its child."""
    b = backbone
    fields = (b.num_layers, b.num_heads, b.mlp_dim, b.dtype, b.attention, b.pad_multiple)
    return Encoder(*fields, b.gelu_approximate, b.remat, name="Transformer", **options)


class ViT(parts.BackboneFields):
    """AugReg ViT; returns the final-LayerNorm class token [B, hidden] in float32."""

    gelu_approximate: bool = True  # False: exact (erf) GELU
    remat: bool = False  # gradient checkpointing per encoder block

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        x = parts.patch_embedding(
            images, self.patch_size, self.hidden_size, self.dtype, "embedding"
        )
        cls = self.param("cls", nn.initializers.zeros, (1, 1, self.hidden_size), jnp.float32)
        x = parts.prepend_token(x, cls)
        return transformer(self)(x).astype(jnp.float32)
