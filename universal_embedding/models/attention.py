"""Multi-head self-attention through `jax.nn.dot_product_attention` (XLA or fused cuDNN).

The cuDNN flash-attention kernel wants a sequence length that is a multiple of 16, so
with `attention='cudnn'` the token sequence is zero-padded (197 -> 208 for ViT-B/16 at
224) and the true length is passed as query/key sequence lengths: padded keys are masked
out and padded query rows come back as zeros, so real tokens see exactly the unpadded
computation. Where cuDNN cannot run (no GPU, float32 compute) the same padded and masked
path runs with the XLA implementation.
"""

from __future__ import annotations

import functools
import logging

import flax.linen as nn
import jax
import jax.numpy as jnp

IMPLEMENTATIONS = ("xla", "cudnn")
CUDNN_SEQ_MULTIPLE = 16
CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)

log = logging.getLogger(__name__)


@functools.cache
def _warn_once(message: str) -> None:
    log.warning(message)


def resolve_implementation(requested: str, dtype: jnp.dtype, backend: str | None = None) -> str:
    """Maps config.model.attention to the implementation that can run here ('xla' | 'cudnn')."""
    if requested not in IMPLEMENTATIONS:
        raise ValueError(
            f"config.model.attention={requested!r} is not supported; use one of {IMPLEMENTATIONS}."
        )
    if requested == "xla":
        return "xla"
    backend = backend or jax.default_backend()
    if backend != "gpu":
        _warn_once(f"attention='cudnn' needs a GPU (backend is {backend!r}); using 'xla'.")
        return "xla"
    if jnp.dtype(dtype) not in [jnp.dtype(d) for d in CUDNN_DTYPES]:
        _warn_once(
            f"attention='cudnn' runs in bfloat16/float16 only (compute dtype is "
            f"{jnp.dtype(dtype).name}); using 'xla'. Set config.model.dtype='bfloat16'."
        )
        return "xla"
    return "cudnn"


def pad_multiple(requested: str) -> int:
    """Sequence multiple the token sequence is padded to (16 for cuDNN, 1 = no padding)."""
    return CUDNN_SEQ_MULTIPLE if requested == "cudnn" else 1


def pad_tokens(x: jax.Array, multiple: int) -> tuple[jax.Array, jax.Array | None]:
    """Zero-pads [B, T, D] tokens to a multiple of `multiple`; returns (tokens, lengths or None)."""
    batch, length = x.shape[0], x.shape[1]
    padded = -(-length // multiple) * multiple
    if padded == length:
        return x, None
    x = jnp.pad(x, ((0, 0), (0, padded - length), (0, 0)))
    return x, jnp.full((batch,), length, dtype=jnp.int32)


def attend(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    implementation: str = "xla",
    seq_lengths: jax.Array | None = None,
) -> jax.Array:
    """softmax(q k^T / sqrt(head_dim)) v over [B, T, heads, head_dim]; padded tokens masked."""
    return jax.nn.dot_product_attention(
        q,
        k,
        v,
        query_seq_lengths=seq_lengths,
        key_value_seq_lengths=seq_lengths,
        implementation=implementation,
    )


class MultiHeadAttention(nn.Module):
    """Self-attention with separate query/key/value/out projections (AugReg layout); given
    `kv`, attention of the `x` queries over the `kv` tokens (SigLIP's attention pooling).

    Kernels: query/key/value [D, heads, head_dim] (+ bias [heads, head_dim]);
    out [heads, head_dim, D] (+ bias [D]).
    """

    num_heads: int
    dtype: jnp.dtype = jnp.float32
    implementation: str = "xla"

    @nn.compact
    def __call__(
        self, x: jax.Array, seq_lengths: jax.Array | None = None, kv: jax.Array | None = None
    ) -> jax.Array:
        hidden = x.shape[-1]
        if hidden % self.num_heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {self.num_heads} heads.")
        proj = functools.partial(
            nn.DenseGeneral,
            features=(self.num_heads, hidden // self.num_heads),
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=nn.initializers.xavier_uniform(),
        )
        q = proj(name="query")(x)
        k = proj(name="key")(x if kv is None else kv)
        v = proj(name="value")(x if kv is None else kv)
        y = attend(q, k, v, implementation=self.implementation, seq_lengths=seq_lengths)
        return nn.DenseGeneral(
            features=hidden,
            axis=(-2, -1),
            dtype=self.dtype,
            param_dtype=jnp.float32,
            kernel_init=nn.initializers.xavier_uniform(),
            name="out",
        )(y)
