"""Attention: the padded + masked path equals the plain softmax(QK^T/sqrt(d))V formula."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from universal_embedding.models import attention


def plain_attention(q, k, v):
    """Reference in numpy float64: softmax(q k^T / sqrt(d)) v per head, [B, T, N, H]."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    logits = np.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(q.shape[-1])
    logits -= logits.max(-1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(-1, keepdims=True)
    return np.einsum("bnts,bsnh->btnh", probs, v)


def test_padded_masked_xla_equals_plain_formula():
    rng = np.random.default_rng(0)
    b, t, n, h = 2, 17, 2, 8
    q, k, v = (rng.normal(size=(b, t, n, h)).astype(np.float32) for _ in range(3))
    want = plain_attention(q, k, v)
    flat = [jnp.asarray(a.reshape(b, t, n * h)) for a in (q, k, v)]
    padded = [attention.pad_tokens(a, 16) for a in flat]
    lengths = padded[0][1]
    assert padded[0][0].shape == (b, 32, n * h)
    np.testing.assert_array_equal(lengths, [17, 17])
    qp, kp, vp = (p[0].reshape(b, 32, n, h) for p in padded)
    # Padded keys hold large values: any leak through the mask would show.
    kp = kp.at[:, t:].set(100.0)
    vp = vp.at[:, t:].set(100.0)
    got = jax.jit(attention.attend)(qp, kp, vp, seq_lengths=lengths)
    np.testing.assert_allclose(np.asarray(got[:, :t]), want, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(got[:, t:]), 0.0)  # padded queries come back zero
    unpadded = jax.jit(attention.attend)(*(jnp.asarray(a) for a in (q, k, v)))
    np.testing.assert_allclose(np.asarray(unpadded), want, atol=1e-5)


def test_pad_tokens_lengths():
    x = jnp.ones((3, 197, 4))
    padded, lengths = attention.pad_tokens(x, 16)
    assert padded.shape == (3, 208, 4)
    np.testing.assert_array_equal(lengths, [197] * 3)
    assert float(padded[:, 197:].sum()) == 0.0
    same, none = attention.pad_tokens(jnp.ones((1, 208, 4)), 16)
    assert same.shape == (1, 208, 4) and none is None
    assert attention.pad_multiple("cudnn") == 16 and attention.pad_multiple("xla") == 1


def test_resolve_implementation():
    assert attention.resolve_implementation("xla", jnp.bfloat16, backend="gpu") == "xla"
    assert attention.resolve_implementation("cudnn", jnp.bfloat16, backend="cpu") == "xla"
    assert attention.resolve_implementation("cudnn", jnp.float32, backend="gpu") == "xla"
    assert attention.resolve_implementation("cudnn", jnp.bfloat16, backend="gpu") == "cudnn"
    with pytest.raises(ValueError, match="config.model.attention='flash'"):
        attention.resolve_implementation("flash", jnp.float32)


def test_multi_head_attention_param_layout():
    mha = attention.MultiHeadAttention(num_heads=2)
    x = jnp.ones((1, 5, 8))
    shapes = jax.eval_shape(mha.init, jax.random.key(0), x)["params"]
    got = {k: {n: v.shape for n, v in p.items()} for k, p in shapes.items()}
    assert got == {
        "query": {"kernel": (8, 2, 4), "bias": (2, 4)},
        "key": {"kernel": (8, 2, 4), "bias": (2, 4)},
        "value": {"kernel": (8, 2, 4), "bias": (2, 4)},
        "out": {"kernel": (2, 4, 8), "bias": (8,)},
    }
