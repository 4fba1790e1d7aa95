"""DINOv2 ViT backbone (layer scale, patch 14, class token, optional register tokens).

Param tree, named after the torch hub state dict of facebookresearch/dinov2 (hub name in
brackets): `patch_embed/{kernel,bias}` (patch_embed.proj), `cls_token` [1, 1, D],
`register_tokens` [1, R, D] (only when R > 0), `pos_embed` [1, 1 + g*g, D] (class row, then the
patch grid of the *training* resolution: the checkpoint's 37x37 grid is resized once, when the
weights are loaded, see pretrained/posemb.py), `blocks_{i}/{norm1, attn/{query,key,value,out},
ls1/gamma, norm2, mlp/{Dense_0,Dense_1}, ls2/gamma}` and the final `norm`.

A block is x + ls1 * attn(norm1(x)), then x + ls2 * mlp(norm2(x)); LayerNorm eps 1e-6, the
exact (erf) GELU of torch's nn.GELU. The position embedding is added to the class and patch
tokens; the registers are inserted after the class token without one. The output is the class
token after the final norm (DINOv2's `x_norm_clstoken`). With `remat` every block is
rematerialised in the backward pass (jax.checkpoint): same values, less memory.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from universal_embedding.models import parts
from universal_embedding.models.attention import MultiHeadAttention, pad_tokens
from universal_embedding.models.vit import MlpBlock


class LayerScale(nn.Module):
    """x * gamma, one learned scale per channel (initialised to 1, as transformers does)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        gamma = self.param("gamma", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        return x * gamma.astype(x.dtype)


class Dinov2Block(parts.BlockFields):
    """Pre-LN block with layer scale on both residual branches."""

    @nn.compact
    def __call__(self, x: jax.Array, seq_lengths: jax.Array | None) -> jax.Array:
        y = parts.layer_norm(self.dtype, "norm1")(x)
        y = MultiHeadAttention(self.num_heads, self.dtype, self.attention, name="attn")(
            y, seq_lengths
        )
        x = x + LayerScale(name="ls1")(y)
        y = parts.layer_norm(self.dtype, "norm2")(x)
        y = MlpBlock(self.mlp_dim, self.dtype, gelu_approximate=False, name="mlp")(y)
        return x + LayerScale(name="ls2")(y)


class Dinov2ViT(parts.BackboneFields):
    """DINOv2 ViT; returns the final-norm class token [B, hidden] in float32."""

    num_registers: int = 0
    remat: bool = False

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        d = self.hidden_size
        x = parts.patch_embedding(images, self.patch_size, d, self.dtype, "patch_embed")
        b = x.shape[0]
        cls = self.param("cls_token", nn.initializers.normal(1e-6), (1, 1, d), jnp.float32)
        x = parts.prepend_token(x, cls)
        shape = (1, x.shape[1], d)
        pos = self.param("pos_embed", nn.initializers.normal(0.02), shape, jnp.float32)
        x = (x + pos).astype(self.dtype)
        if self.num_registers:
            reg_shape = (1, self.num_registers, d)
            init = nn.initializers.normal(1e-6)
            reg = self.param("register_tokens", init, reg_shape, jnp.float32)
            reg = jnp.broadcast_to(reg, (b, *reg_shape[1:])).astype(self.dtype)
            x = jnp.concatenate([x[:, :1], reg, x[:, 1:]], axis=1)
        x, seq_lengths = pad_tokens(x, self.pad_multiple)
        fields = (self.num_heads, self.mlp_dim, self.dtype, self.attention)
        x = parts.stack_blocks(
            Dinov2Block, self.num_layers, "blocks_", self.remat, x, seq_lengths, *fields
        )
        return parts.layer_norm(self.dtype, "norm")(x[:, 0]).astype(jnp.float32)
