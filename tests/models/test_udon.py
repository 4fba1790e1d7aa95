"""The UDON model: parameter names and shapes, outputs, dtype option, pretrained loading."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from universal_embedding import settings
from universal_embedding.configs import base, config_train_udon, tiny
from universal_embedding.data.normalization import normalization_name
from universal_embedding.models import embedding_model, udon

CLASSES = {"cars": 5, "sop": 3}


def udon_config(model_class="udon_vit_with_embedding", **model):
    c = tiny.tiny_vit(config_train_udon.add_udon_fields(base.get_config()), image_size=16)
    c.model_class = model_class
    c.dataset_name = "cars,sop"
    c.model.teacher_dim, c.model.universal_student_dim = (12,), (6,)
    for key, value in model.items():
        c.model[key] = value
    return c


@pytest.fixture(scope="module")
def built():
    c = udon_config()
    model = embedding_model.build_model(settings.model_spec(c), CLASSES)
    params = jax.device_get(embedding_model.init_params(model, jax.random.PRNGKey(0), 16))
    return c, model, params


def shapes(tree):
    return jax.tree.map(lambda a: tuple(a.shape), tree)


def test_parameter_names_and_shapes(built):
    _, model, params = built
    assert isinstance(model, udon.UdonModel) and model.domains == ("cars", "sop")
    assert sorted(params) == ["backbone", "heads", "projections"]
    assert shapes(params["projections"]) == {
        "teacher_projection_domain_0": {"Dense_0": {"kernel": (16, 12), "bias": (12,)}},
        "teacher_projection_domain_1": {"Dense_0": {"kernel": (16, 12), "bias": (12,)}},
        "universal_student_projection_domain_0": {"Dense_0": {"kernel": (16, 6), "bias": (6,)}},
    }
    assert shapes(params["heads"]) == {
        "teacher_output_projection_0": {"kernel": (12, 5)},
        "universal_student_output_projection_0": {"kernel": (6, 5)},
        "teacher_output_projection_1": {"kernel": (12, 3)},
        "universal_student_output_projection_1": {"kernel": (6, 3)},
    }
    # lecun_uniform heads: |w| <= sqrt(3 / fan_in)
    assert np.abs(params["heads"]["teacher_output_projection_0"]["kernel"]).max() <= np.sqrt(3 / 12)


def test_outputs_are_the_normalised_projections(built):
    _, model, params = built
    images = np.random.default_rng(0).normal(size=(4, 16, 16, 3)).astype(np.float32)
    out = model.apply({"params": params}, images, domain=1)
    f = np.asarray(out["backbone_out"], np.float64)

    def proj(name):
        p = params["projections"][name]["Dense_0"]
        y = f @ p["kernel"] + p["bias"]
        return y / np.linalg.norm(y, axis=-1, keepdims=True)

    np.testing.assert_allclose(
        out["teacher_embedd"], proj("teacher_projection_domain_1"), atol=1e-5
    )
    student = proj("universal_student_projection_domain_0")
    np.testing.assert_allclose(out["universal_student_embedd"], student, atol=1e-5)
    np.testing.assert_array_equal(out["projected"], out["universal_student_embedd"])
    traced = jax.jit(lambda p, x, d: model.apply({"params": p}, x, domain=d)["teacher_embedd"])
    np.testing.assert_allclose(
        traced(params, images, 0), proj("teacher_projection_domain_0"), atol=1e-5
    )


def test_mlp_widths_put_layer_norm_and_gelu_between_layers():
    mlp = udon.Mlp((8, 4))
    x = np.random.default_rng(1).normal(size=(3, 5)).astype(np.float32)
    params = mlp.init(jax.random.PRNGKey(0), x)["params"]
    assert sorted(params) == ["Dense_0", "Dense_1", "LayerNorm_0"]
    h = x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"]
    mu, var = h.mean(-1, keepdims=True), h.var(-1, keepdims=True)
    h = (h - mu) / np.sqrt(var + 1e-6) * params["LayerNorm_0"]["scale"] + params["LayerNorm_0"][
        "bias"
    ]
    h = jax.nn.gelu(h)
    want = h @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"]
    np.testing.assert_allclose(mlp.apply({"params": params}, x), want, atol=1e-5)


def test_bfloat16_and_attention_options(built):
    _, model32, params = built
    c = udon_config(dtype="bfloat16", attention="cudnn")  # cudnn falls back to xla on CPU
    model16 = embedding_model.build_model(settings.model_spec(c), CLASSES)
    images = np.random.default_rng(2).normal(size=(2, 16, 16, 3)).astype(np.float32)
    a = model32.apply({"params": params}, images, domain=0)
    b = model16.apply({"params": params}, images, domain=0)
    assert b["teacher_embedd"].dtype == jnp.float32
    np.testing.assert_allclose(b["teacher_embedd"], a["teacher_embedd"], atol=5e-2)


def test_clip_variant_normalisation_and_pretrained_family():
    assert normalization_name("udon_clip_vit_with_embedding") == "clip"
    assert normalization_name("udon_vit_with_embedding") == "imagenet"
    assert udon.backbone_family("udon_clip_vit_with_embedding") == "clip_vit_with_embedding"
    model = embedding_model.build_model(
        settings.model_spec(udon_config("udon_clip_vit_with_embedding")), None
    )
    assert type(model.backbone).__name__ == "ClipViT" and model.classes == ()


def test_augreg_weights_load_into_the_udon_backbone(built, tmp_path):
    """The same pretrained loader: an AugReg-named .npz replaces params['backbone'] only."""
    from flax.traverse_util import flatten_dict

    from universal_embedding.pretrained import load_pretrained

    c, _, params = built
    rng = np.random.default_rng(3)
    flat = {
        "/".join(k): rng.normal(size=v.shape).astype(np.float32)
        for k, v in flatten_dict(params["backbone"]).items()
    }
    path = str(tmp_path / "augreg.npz")
    np.savez(path, **flat)
    loaded = load_pretrained(params, path, settings.model_spec(c))
    for key, value in flatten_dict(loaded["backbone"]).items():
        np.testing.assert_array_equal(np.asarray(value), flat["/".join(key)])
    assert loaded["projections"] is params["projections"] and loaded["heads"] is params["heads"]


def test_udon_needs_a_head_per_training_domain():
    with pytest.raises(ValueError, match="one head per training domain"):
        embedding_model.build_model(settings.model_spec(udon_config()), {"joint": 8})
