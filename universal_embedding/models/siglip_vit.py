"""SigLIP / SigLIP 2 image tower: a ViT without class token, pooled by attention (MAP head).

As big_vision's `vit.py` with `pool_type='map'`: patch embedding `embedding`, learned position
embedding `pos_embedding` [1, grid*grid, hidden] added to the patch tokens, pre-LN encoder
blocks, the final LayerNorm `Transformer/encoder_norm` over every token, then the
multihead-attention pooling head `MAPHead_0`: a learned `probe` token attends over the tokens
(`MultiHeadDotProductAttention_0`), then `+ MlpBlock_0(LayerNorm_0(.))`; its output is the
embedding. LayerNorm eps 1e-6 and the tanh GELU, as big_vision and transformers compute them.

The encoder ('Transformer') is vit.py's `Encoder` without its position embedding, normed over
every token; its blocks are vit.py's `EncoderBlock` (AugReg names `LayerNorm_0`,
`MultiHeadDotProductAttention_1`, `LayerNorm_2`, `MlpBlock_3`); pretrained/siglip.py renames
big_vision's and Hugging Face's tensors to these paths. `remat=True` recomputes each block in
the backward pass (gradient checkpointing): the same parameters and gradients, less memory.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from universal_embedding.models import parts
from universal_embedding.models.attention import MultiHeadAttention
from universal_embedding.models.vit import MlpBlock, transformer


class MAPHead(nn.Module):
    """Multihead attention pooling: one learned probe token attends over the tokens [B, T, D]."""

    num_heads: int
    mlp_dim: int
    dtype: jnp.dtype = jnp.float32
    gelu_approximate: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, _, d = x.shape
        init = nn.initializers.xavier_uniform()
        probe = self.param("probe", init, (1, 1, d), jnp.float32)
        query = jnp.broadcast_to(probe, (b, 1, d)).astype(self.dtype)
        attention = MultiHeadAttention(
            self.num_heads, self.dtype, "xla", name="MultiHeadDotProductAttention_0"
        )
        y = attention(query, kv=x)
        mlp = MlpBlock(self.mlp_dim, self.dtype, self.gelu_approximate, name="MlpBlock_0")
        y = y + mlp(parts.layer_norm(self.dtype, "LayerNorm_0")(y))
        return y[:, 0]


class SiglipViT(parts.BackboneFields):
    """SigLIP image tower; returns the MAP-pooled vector [B, hidden] in float32."""

    gelu_approximate: bool = True  # False: exact (erf) GELU (timm's SigLIP default)
    remat: bool = False  # gradient checkpointing per encoder block

    @nn.compact
    def __call__(self, images: jax.Array) -> jax.Array:
        d = self.hidden_size
        x = parts.patch_embedding(images, self.patch_size, d, self.dtype, "embedding")
        init = nn.initializers.normal(1 / np.sqrt(d))
        pos = self.param("pos_embedding", init, (1, x.shape[1], d), jnp.float32)
        x = (x + pos).astype(self.dtype)
        x = transformer(self, position_embedding=False, class_token=False)(x)
        head = MAPHead(
            self.num_heads, self.mlp_dim, self.dtype, self.gelu_approximate, name="MAPHead_0"
        )
        return head(x).astype(jnp.float32)
