"""Embedding model: output contract, param layout, heads, dtypes and the cuDNN code path on CPU."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from universal_embedding import settings
from universal_embedding.configs.base import get_config
from universal_embedding.models import embedding_model as em
from universal_embedding.models import heads
from universal_embedding.pretrained.common import flatten

IMAGE = 32
CLASSES = {"cars": 5, "sop": 7}


def tiny_config(model_class="vit_with_embedding", **model):
    c = get_config()
    c.model_class = model_class
    c.model.hidden_size, c.model.num_heads, c.model.mlp_dim = 32, 2, 64
    c.model.num_layers, c.model.patch_size = 2, 8
    for k, v in model.items():
        setattr(c.model, k, v)
    return c


_JITTED = {}


def run(model, params, images, head="sop"):
    """model.apply, jitted once per (model, head) so tests share compilations."""
    key = (model, head)
    if key not in _JITTED:
        _JITTED[key] = jax.jit(lambda p, x: model.apply({"params": p}, x, head=head))
    return _JITTED[key](params, images)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(1).normal(size=(4, IMAGE, IMAGE, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def vit_init():
    model = em.build_model(settings.model_spec(tiny_config("vit_with_embedding")), CLASSES)
    return model, em.init_params(model, jax.random.key(0), IMAGE)


@pytest.fixture(scope="module", params=["vit_with_embedding", "clip_vit_with_embedding"])
def tiny(request):
    if request.param == "vit_with_embedding":
        return (request.param, *request.getfixturevalue("vit_init"))
    # Same init code path; random values without a second (slow) init compilation.
    model = em.build_model(settings.model_spec(tiny_config(request.param)), CLASSES)
    return request.param, model, random_params(model)


def random_params(model, seed=0):
    """Params shaped by init_params (traced, not compiled), filled with N(0, 0.1) values."""
    shapes = jax.eval_shape(lambda k: em.init_params(model, k, IMAGE), jax.random.key(0))
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda s: rng.normal(0, 0.1, s.shape).astype(np.float32), shapes)


def test_init_params_deterministic_and_scaled(vit_init):
    model, params = vit_init
    again = flatten(em.init_params(model, jax.random.key(0), IMAGE))
    other = flatten(em.init_params(model, jax.random.key(1), IMAGE))
    flat = flatten(params)
    for name, value in flat.items():
        np.testing.assert_array_equal(value, again[name])
    pos = "backbone/Transformer/posembed_input/pos_embedding"
    assert not np.array_equal(flat[pos], other[pos])
    assert abs(float(np.std(flat[pos])) - 0.02) < 0.005  # N(0, 0.02) as in AugReg
    np.testing.assert_array_equal(flat["backbone/cls"], 0.0)


def test_sizes_from_model_type():
    assert em.size_from_type("S/16") == em.BackboneSize(384, 6, 1536, 12, 16)
    assert em.size_from_type("B/16") == em.BackboneSize(768, 12, 3072, 12, 16)
    assert em.size_from_type("L/16") == em.BackboneSize(1024, 16, 4096, 24, 16)
    assert em.backbone_size(settings.model_spec(tiny_config())) == em.BackboneSize(32, 2, 64, 2, 8)
    with pytest.raises(
        ValueError,
        match=r"valid: Ti/<patch>, S/<patch>, B/<patch>, L/<patch>, So400m/<patch> \(e.g. B/16, L",
    ):
        em.size_from_type("H/14x")


@pytest.mark.parametrize(
    "model_class, want",
    [
        # 12 blocks * (12 D^2 + 13 D) + patch conv 768*3*256 + 768 + cls 768 + pos 197*768
        # + final LN 2*768 = 85,798,656 (timm vit_base_patch16_224 minus its 1000-class head).
        ("vit_with_embedding", 85_798_656),
        # CLIP: conv without bias (-768), plus ln_pre (+1536): 85,799,424
        # (OpenAI's 86,192,640 visual params minus the 768x512 visual.proj).
        ("clip_vit_with_embedding", 85_799_424),
    ],
)
def test_b16_backbone_parameter_count(model_class, want):
    c = get_config()
    c.model_class, c.model_type = model_class, "B/16"
    model = em.build_model(settings.model_spec(c), None)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    count = sum(
        int(np.prod(s.shape)) for s in jax.tree_util.tree_leaves(shapes["params"]["backbone"])
    )
    assert count == want


def test_vit_param_names_are_augreg_keys(tiny):
    model_class, _, params = tiny
    names = set(flatten(params["backbone"]))
    if model_class == "vit_with_embedding":
        block = "Transformer/encoderblock_1/"
        expected = {"embedding/kernel", "embedding/bias", "cls", "Transformer/encoder_norm/scale"}
        expected |= {"Transformer/posembed_input/pos_embedding", block + "LayerNorm_0/scale"}
        expected |= {block + "MultiHeadDotProductAttention_1/out/kernel"}
        expected |= {block + "MlpBlock_3/Dense_1/bias", block + "LayerNorm_2/bias"}
        assert len(names) == 6 + 2 * 16  # embedding 2, cls, pos, norm 2; 16 per block
    else:
        block = "transformer/resblocks_1/"
        expected = {"conv1/kernel", "class_embedding", "positional_embedding", "ln_pre/scale"}
        expected |= {"ln_post/bias", block + "attn/query/kernel", block + "mlp/c_proj/kernel"}
        expected |= {block + "ln_1/scale", block + "ln_2/bias", block + "mlp/c_fc/bias"}
        assert len(names) == 7 + 2 * 16  # conv1, class, pos, ln_pre 2, ln_post 2
    assert expected <= names
    assert params["projection"]["kernel"].shape == (32, 64)
    assert {k: v["kernel"].shape for k, v in params["heads"].items()} == {
        "cars": (64, 5),
        "sop": (64, 7),
    }
    assert all(x.dtype == jnp.float32 for x in jax.tree_util.tree_leaves(params))


def test_output_contract_and_cosine_logits(tiny, images):
    _, model, params = tiny
    out = run(model, params, images)
    assert set(out) == {"backbone_out", "projected", "logits"}
    assert out["backbone_out"].shape == (4, 32) and out["projected"].shape == (4, 64)
    assert all(v.dtype == jnp.float32 for v in out.values())
    np.testing.assert_allclose(np.linalg.norm(out["backbone_out"], axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(out["projected"], axis=1), 1.0, atol=1e-5)
    # projected = normalise(backbone_out @ W + b); logits = projected . (column / |column|).
    proj = params["projection"]
    p = np.asarray(out["backbone_out"]) @ np.asarray(proj["kernel"]) + np.asarray(proj["bias"])
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    np.testing.assert_allclose(out["projected"], p, atol=1e-5)
    w = np.asarray(params["heads"]["sop"]["kernel"])
    np.testing.assert_allclose(out["logits"], p @ (w / np.linalg.norm(w, axis=0)), atol=1e-5)
    assert out["logits"].shape == (4, 7) and np.abs(out["logits"]).max() <= 1.0 + 1e-6
    # Scaling a class column leaves its cosines unchanged.
    scaled = jax.tree_util.tree_map(lambda x: x, params)
    scaled["heads"]["sop"]["kernel"] = params["heads"]["sop"]["kernel"] * 7.0
    np.testing.assert_allclose(run(model, scaled, images)["logits"], out["logits"], atol=1e-5)
    with pytest.raises(ValueError, match="Unknown head 'met'"):
        model.apply({"params": params}, images, head="met")


def test_all_heads_are_each_heads_cosines_side_by_side(vit_init, images):
    model, params = vit_init
    every = np.asarray(run(model, params, images, head=em.ALL_HEADS)["logits"])
    parts = [np.asarray(run(model, params, images, head=n)["logits"]) for n in CLASSES]
    assert every.shape == (4, 5 + 7)
    np.testing.assert_allclose(every, np.concatenate(parts, axis=1), atol=1e-6)
    offset, columns = heads.head_classes(tuple(CLASSES.items()), jnp.int32(1))
    assert int(offset) == 5 and np.asarray(columns).tolist() == [False] * 5 + [True] * 7
    offset, columns = heads.head_classes(tuple(CLASSES.items()), jnp.int32(0))
    assert int(offset) == 0 and np.asarray(columns).tolist() == [True] * 5 + [False] * 7


def test_no_projection_and_joint_head(images):
    model = em.build_model(settings.model_spec(tiny_config(output_dim=0)), {"joint": 12})
    shapes = jax.eval_shape(lambda k: em.init_params(model, k, IMAGE), jax.random.key(0))
    assert set(shapes) == {"backbone", "heads"}  # no 'projection' params
    assert shapes["heads"]["joint"]["kernel"].shape == (32, 12)
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map(
        lambda s: rng.normal(0, 0.1, s.shape).astype(np.float32), shapes
    )
    out = run(model, params, images, head="joint")
    np.testing.assert_array_equal(out["projected"], out["backbone_out"])
    w = params["heads"]["joint"]["kernel"]
    want = np.asarray(out["backbone_out"]) @ (w / np.linalg.norm(w, axis=0))
    np.testing.assert_allclose(out["logits"], want, atol=1e-5)
    bare = em.build_model(settings.model_spec(tiny_config(output_dim=0)), None)
    with pytest.raises(ValueError, match="built without heads"):
        bare.apply({"params": params}, images, head="joint")


def test_bfloat16_close_to_float32(tiny, images):
    model_class, model, params = tiny
    model16 = em.build_model(
        settings.model_spec(tiny_config(model_class, dtype="bfloat16")), CLASSES
    )
    want = run(model, params, images)
    got = run(model16, params, images)
    for key in ("backbone_out", "projected"):
        assert got[key].dtype == jnp.float32
        assert float(jnp.max(jnp.abs(got[key] - want[key]))) <= 2e-2
        assert float(jnp.max(jnp.abs(got[key] - want[key]))) > 0  # really ran in bfloat16


def test_cudnn_setting_runs_padded_path_on_cpu(tiny, images):
    model_class, model, params = tiny
    padded = em.build_model(
        settings.model_spec(tiny_config(model_class, attention="cudnn")), CLASSES
    )
    assert padded.backbone.pad_multiple == 16 and padded.backbone.attention == "xla"
    want = run(model, params, images)
    got = run(padded, params, images)
    np.testing.assert_allclose(got["backbone_out"], want["backbone_out"], atol=1e-5)


def test_config_errors():
    with pytest.raises(ValueError, match="model_class='resnet'"):
        em.build_model(settings.model_spec(tiny_config("resnet")), None)
    with pytest.raises(ValueError, match="dtype='float16'"):
        em.build_model(settings.model_spec(tiny_config(dtype="float16")), None)
