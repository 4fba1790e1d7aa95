"""SigLIP image tower: parameter layout, sizes, remat gradients, the cuDNN padding path on CPU."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.models.test_embedding_model import CLASSES, IMAGE, tiny_config
from universal_embedding import settings
from universal_embedding.models import embedding_model as em
from universal_embedding.models import siglip_vit, udon
from universal_embedding.pretrained.common import flatten

FAMILY = "siglip_vit_with_embedding"


def build(**model):
    return em.build_model(settings.model_spec(tiny_config(FAMILY, **model)), CLASSES)


def random_params(model, seed=0):
    """Params of init's shapes (traced, not compiled), N(0, 0.2) values; LayerNorm scales ~1."""
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, IMAGE, IMAGE, 3)), head="*")
    )["params"]
    flat = flatten(shapes)
    rng = np.random.default_rng(seed)
    values = {k: rng.normal(0, 0.2, v.shape).astype(np.float32) for k, v in flat.items()}
    for k in values:
        if k.endswith("scale"):
            values[k] += 1.0
    return jax.tree_util.tree_map_with_path(
        lambda path, _: values["/".join(p.key for p in path)], shapes
    )


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).normal(size=(4, IMAGE, IMAGE, 3)).astype(np.float32)


def test_backbone_params_are_the_big_vision_tree_with_vit_block_names():
    params = random_params(build())
    kb, sb = ("kernel", "bias"), ("scale", "bias")
    attention = [f"{n}/{p}" for n in ("query", "key", "value", "out") for p in kb]
    mlp = [f"Dense_{i}/{p}" for i in (0, 1) for p in kb]

    def module(name, leaves):
        return {f"{name}/{leaf}" for leaf in leaves}

    block = module("LayerNorm_0", sb) | module("LayerNorm_2", sb)
    block |= module("MultiHeadDotProductAttention_1", attention) | module("MlpBlock_3", mlp)
    want = {"embedding/kernel", "embedding/bias", "pos_embedding", "MAPHead_0/probe"}
    want |= module("Transformer/encoder_norm", sb)
    want |= {f"Transformer/encoderblock_{i}/{b}" for i in range(2) for b in block}
    want |= module("MAPHead_0/MultiHeadDotProductAttention_0", attention)
    want |= module("MAPHead_0/LayerNorm_0", sb) | module("MAPHead_0/MlpBlock_0", mlp)
    assert len(want) == 3 + 1 + 2 + 2 * 16 + 8 + 2 + 4
    got = flatten(params["backbone"])
    assert set(got) == want
    assert got["pos_embedding"].shape == (1, 16, 32)  # 4x4 patches, no class token
    assert got["MAPHead_0/probe"].shape == (1, 1, 32)
    assert set(params) == {"backbone", "projection", "heads"}


def test_map_head_by_hand(images):
    """The pooling head against numpy: one probe query over all tokens, then + Mlp(LN(.))."""
    head = siglip_vit.MAPHead(num_heads=2, mlp_dim=8)
    x = images[:2, :5, :4, 0].astype(np.float32)  # [2, 5 tokens, 4]
    shapes = jax.eval_shape(lambda: head.init(jax.random.key(0), x))["params"]
    rng = np.random.default_rng(3)
    p = jax.tree_util.tree_map(lambda s: rng.normal(0, 0.5, s.shape).astype(np.float32), shapes)
    got = np.asarray(head.apply({"params": p}, x))

    a = p["MultiHeadDotProductAttention_0"]
    q = np.einsum("d,dhk->hk", p["probe"][0, 0], a["query"]["kernel"]) + a["query"]["bias"]
    k = np.einsum("btd,dhk->bthk", x, a["key"]["kernel"]) + a["key"]["bias"]
    v = np.einsum("btd,dhk->bthk", x, a["value"]["kernel"]) + a["value"]["bias"]
    logits = np.einsum("hk,bthk->bht", q, k) / np.sqrt(2)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    y = np.einsum("bht,bthk->bhk", w, v)
    y = np.einsum("bhk,hkd->bd", y, a["out"]["kernel"]) + a["out"]["bias"]
    ln = p["LayerNorm_0"]
    z = (y - y.mean(-1, keepdims=True)) / np.sqrt(y.var(-1, keepdims=True) + 1e-6)
    z = z * ln["scale"] + ln["bias"]
    m = p["MlpBlock_0"]
    h = z @ m["Dense_0"]["kernel"] + m["Dense_0"]["bias"]
    h = 0.5 * h * (1 + np.tanh(np.sqrt(2 / np.pi) * (h + 0.044715 * h**3)))  # tanh GELU
    want = y + h @ m["Dense_1"]["kernel"] + m["Dense_1"]["bias"]
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_model_types_and_udon():
    size = em.size_from_type("So400m/14")
    assert (size.hidden_size, size.num_heads, size.mlp_dim, size.num_layers) == (1152, 16, 4304, 27)
    assert size.patch_size == 14 and size.describe().startswith("So400m/14 (hidden 1152")
    assert udon.backbone_family("udon_siglip_vit_with_embedding") == FAMILY
    c = tiny_config("udon_siglip_vit_with_embedding")
    c.model.teacher_dim, c.model.universal_student_dim = (8,), (4,)
    c.dataset_name = "cars,sop"
    model = em.build_model(settings.model_spec(c), CLASSES)
    assert isinstance(model.backbone, siglip_vit.SiglipViT)


def test_cudnn_padding_path_gives_the_unpadded_result(images):
    """attention='cudnn' pads 16 tokens to 16 (none) at 32 px; at 40 px 25 -> 32, masked."""
    x = np.random.default_rng(2).normal(size=(2, 40, 40, 3)).astype(np.float32)
    plain, padded = build(num_layers=1), build(num_layers=1, attention="cudnn")
    assert padded.backbone.pad_multiple == 16
    p = random_params(plain)
    p["backbone"]["pos_embedding"] = np.random.default_rng(4).normal(size=(1, 25, 32))
    got, want = embed(padded, p, x), embed(plain, p, x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)


def test_remat_gradients_equal_the_plain_step(images):
    """model.remat: the same params tree and, through a cosine-softmax loss on every head, the
    same gradients within 1e-6."""
    plain, remat = build(num_layers=1), build(num_layers=1, remat=True)
    assert remat.backbone.remat and not plain.backbone.remat
    params = random_params(plain)
    labels = jnp.array([0, 3, 5, 11])

    def loss(model):
        def fn(p):
            logits = 16.0 * model.apply({"params": p}, images, head="*")["logits"]
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))

        return jax.jit(jax.value_and_grad(fn))

    (l_plain, g_plain), (l_remat, g_remat) = loss(plain)(params), loss(remat)(params)
    assert float(l_plain) == pytest.approx(float(l_remat), abs=1e-6)
    flat_plain, flat_remat = flatten(g_plain), flatten(g_remat)
    assert set(flat_plain) == set(flat_remat)
    for name, g in flat_plain.items():
        np.testing.assert_allclose(flat_remat[name], g, atol=1e-6, err_msg=name)
    assert max(float(jnp.abs(g).max()) for g in flat_plain.values()) > 1e-3  # not all zero


def embed(model, params, x):
    return jax.jit(lambda p, x: model.apply({"params": p}, x)["backbone_out"])(params, x)
