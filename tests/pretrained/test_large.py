"""ViT-L of the existing families: CLIP ViT-L/14 (`model_type='L/14'`) and AugReg ViT-L/16
(`model_type='L/16'`).

The L size (hidden 1024, 24 layers, 16 heads, MLP 4096) is big_vision's `decode_variant('L')`
(big_vision/models/vit.py); OpenAI's CLIP ViT-L/14 is width 1024, 24 layers, patch 14 (open_clip
model_configs/ViT-L-14.json) with width // 64 = 16 heads and an MLP of 4 * width (openai/CLIP
clip/model.py). Two kinds of check:
- full size, nothing allocated: every tensor of a release file's layout, as zero-stride arrays,
  maps by name and shape onto the L model's abstract parameters (jax.eval_shape);
- L-shaped (hidden 1024, 16 heads, MLP 4096, patch 14 / 16) with 2 layers and 2x2-patch images:
  `backbone_out` from each file format equals transformers' CLIPVisionModel / ViTModel.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

from tests.pretrained.test_formats import (
    hf_clip_to_openai,
    hf_embed,
    hf_vit_to_augreg,
    numpy_state,
    randomise,
    torchscript_holding,
)
from universal_embedding import settings
from universal_embedding.configs.base import get_config
from universal_embedding.models import embedding_model as em
from universal_embedding.pretrained import load
from universal_embedding.pretrained.common import flatten, merge_strict

D, HEADS, MLP, LAYERS = 1024, 16, 4096, 24
TOL = 1e-5


def l_config(model_class, model_type, image_size, num_layers=None):
    c = get_config()
    c.model_class, c.model_type, c.image_size = model_class, model_type, image_size
    c.model.num_layers = num_layers
    return c


def abstract_params(config):
    model = em.build_model(settings.model_spec(config), {"cars": 3})
    images = jnp.zeros((1, config.image_size, config.image_size, 3))
    return model, jax.eval_shape(lambda: model.init(jax.random.key(0), images, head="*"))["params"]


def test_l_sizes():
    want = em.BackboneSize(D, HEADS, MLP, LAYERS, 14)
    assert em.size_from_type("L/14") == want
    assert em.size_from_type("L/16") == em.BackboneSize(D, HEADS, MLP, LAYERS, 16)
    assert want.describe() == "L/14 (hidden 1024, 16 heads, mlp 4096, 24 layers, patch 14)"


# ----------------------------------------------------------------------------- full size


def zeros(*shape):
    """An array of `shape` that takes no memory (every stride 0)."""
    return np.broadcast_to(np.float32(0), shape)


def openai_l14_state():
    """The tensor layout of OpenAI's ViT-L/14 state dict at 224 px (visual tower, its
    projection to 768, a stand-in text tower and the size entries build_model drops)."""
    v = {
        "conv1.weight": zeros(D, 3, 14, 14),
        "class_embedding": zeros(D),
        "positional_embedding": zeros(16 * 16 + 1, D),
        "proj": zeros(D, 768),
    }
    for ln in ("ln_pre", "ln_post"):
        v[f"{ln}.weight"], v[f"{ln}.bias"] = zeros(D), zeros(D)
    for i in range(LAYERS):
        b = f"transformer.resblocks.{i}."
        v |= {b + "attn.in_proj_weight": zeros(3 * D, D), b + "attn.in_proj_bias": zeros(3 * D)}
        v |= {b + "attn.out_proj.weight": zeros(D, D), b + "attn.out_proj.bias": zeros(D)}
        for ln in ("ln_1", "ln_2"):
            v[f"{b}{ln}.weight"], v[f"{b}{ln}.bias"] = zeros(D), zeros(D)
        v |= {b + "mlp.c_fc.weight": zeros(MLP, D), b + "mlp.c_fc.bias": zeros(MLP)}
        v |= {b + "mlp.c_proj.weight": zeros(D, MLP), b + "mlp.c_proj.bias": zeros(D)}
    state = {f"visual.{k}": a for k, a in v.items()}
    state |= {"positional_embedding": zeros(77, 768), "text_projection": zeros(768, 768)}
    state |= {"transformer.resblocks.0.attn.in_proj_weight": zeros(3 * 768, 768)}
    state |= {k: np.array(n) for k, n in (("input_resolution", 224), ("vocab_size", 49408))}
    return state


def augreg_l16_arrays():
    """The keys and shapes of an AugReg ViT-L/16 .npz at 224 px (with its 1000-class head)."""
    a = {
        "embedding/kernel": zeros(16, 16, 3, D),
        "embedding/bias": zeros(D),
        "cls": zeros(1, 1, D),
        "Transformer/posembed_input/pos_embedding": zeros(1, 14 * 14 + 1, D),
        "Transformer/encoder_norm/scale": zeros(D),
        "Transformer/encoder_norm/bias": zeros(D),
        "head/kernel": zeros(D, 1000),
        "head/bias": zeros(1000),
    }
    for i in range(LAYERS):
        t = f"Transformer/encoderblock_{i}/"
        for ln in ("LayerNorm_0", "LayerNorm_2"):
            a[f"{t}{ln}/scale"], a[f"{t}{ln}/bias"] = zeros(D), zeros(D)
        att = t + "MultiHeadDotProductAttention_1/"
        for n in ("query", "key", "value"):
            a[f"{att}{n}/kernel"], a[f"{att}{n}/bias"] = zeros(D, HEADS, 64), zeros(HEADS, 64)
        a[att + "out/kernel"], a[att + "out/bias"] = zeros(HEADS, 64, D), zeros(D)
        a[t + "MlpBlock_3/Dense_0/kernel"], a[t + "MlpBlock_3/Dense_0/bias"] = (
            zeros(D, MLP),
            zeros(MLP),
        )
        a[t + "MlpBlock_3/Dense_1/kernel"], a[t + "MlpBlock_3/Dense_1/bias"] = (
            zeros(MLP, D),
            zeros(D),
        )
    return a


@pytest.mark.parametrize(
    "model_class, model_type, arrays, tensors, count",
    [
        # 24 blocks * (12 D^2 + 13 D) + conv 1024*3*14*14 (no bias) + class 1024
        # + positions 257*1024 + ln_pre and ln_post 4*1024 = 303,179,776
        ("clip_vit_with_embedding", "L/14", openai_l14_state, 7 + 16 * LAYERS, 303_179_776),
        # 24 blocks + conv 1024*3*16*16 + bias 1024 + cls 1024 + positions 197*1024
        # + encoder_norm 2*1024 = 303,301,632
        ("vit_with_embedding", "L/16", augreg_l16_arrays, 6 + 16 * LAYERS, 303_301_632),
    ],
)
def test_full_size_release_layout_maps_onto_l(model_class, model_type, arrays, tensors, count):
    _, params = abstract_params(l_config(model_class, model_type, 224))
    state = arrays()
    fmt = load.detect_format("release", set(state))
    assert fmt.family == model_class
    conv = fmt.convert(state, HEADS)
    loaded = flatten(merge_strict(params["backbone"], conv, "release", fmt.posemb))
    assert len(loaded) == tensors
    assert sum(int(np.prod(a.shape)) for a in loaded.values()) == count
    # no position embedding was resized: the release grid is the model's at 224 px
    assert load._size(loaded, model_class) == em.size_from_type(model_type)


# ----------------------------------------------------------------------------- L-shaped


class Ours:
    """The L model with 2 layers at `image` px: zero params to load into, one jitted apply."""

    def __init__(self, model_class, model_type, image):
        self.config = l_config(model_class, model_type, image, num_layers=2)
        model, shapes = abstract_params(self.config)
        self.params = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)
        self.apply = jax.jit(lambda p, x: model.apply({"params": p}, x)["backbone_out"])

    def embed(self, path, images):
        params = load.load_pretrained(self.params, str(path), settings.model_spec(self.config))
        return np.asarray(self.apply(params, images))


def halved(model):
    """Every parameter rounded to float16 (OpenAI's release stores its weights in float16)."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())
    return model


def images(size):
    return np.random.default_rng(0).normal(size=(2, size, size, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def clip_l(tmp_path_factory):
    cfg = transformers.CLIPVisionConfig(
        hidden_size=D,
        intermediate_size=MLP,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        image_size=28,
        patch_size=14,
    )
    model = halved(randomise(transformers.CLIPVisionModel(cfg), seed=11))
    folder = tmp_path_factory.mktemp("hf_clip_l")
    model.save_pretrained(folder)  # with config.json: 16 heads
    state = numpy_state(model)
    return {"want": hf_embed(model, images(28), pooled=True), "state": state, "dir": folder}


def openai_dtype(name):
    """float16 where OpenAI's convert_weights puts it (conv, linear and in_proj weights and
    biases, proj), float32 for embeddings and LayerNorms."""
    half = ("conv1.weight", "in_proj_", "out_proj.", "c_fc.", "c_proj.", "proj")
    return torch.float16 if any(h in name for h in half) and "ln_" not in name else torch.float32


def test_clip_l14_openai_torchscript(clip_l, tmp_path):
    """ViT-L-14.pt as OpenAI releases it: a TorchScript archive, weights in float16."""
    openai = hf_clip_to_openai(clip_l["state"])
    state = {k: torch.from_numpy(np.array(v)).to(openai_dtype(k)) for k, v in openai.items()}
    assert state["visual.transformer.resblocks.1.attn.in_proj_weight"].dtype == torch.float16
    assert state["visual.positional_embedding"].dtype == torch.float32
    path = tmp_path / "ViT-L-14.pt"
    torchscript_holding(state).save(str(path))
    got = Ours("clip_vit_with_embedding", "L/14", 28).embed(path, images(28))
    np.testing.assert_allclose(got, clip_l["want"], atol=TOL)


def test_clip_l14_hf_safetensors_and_npy(clip_l, tmp_path):
    ours = Ours("clip_vit_with_embedding", "L/14", 28)
    np.testing.assert_allclose(ours.embed(clip_l["dir"], images(28)), clip_l["want"], atol=TOL)
    np.save(tmp_path / "vit_l14.npy", hf_clip_to_openai(clip_l["state"]), allow_pickle=True)
    got = ours.embed(tmp_path / "vit_l14.npy", images(28))
    np.testing.assert_allclose(got, clip_l["want"], atol=TOL)


def test_augreg_l16_npz_and_hf(tmp_path):
    cfg = transformers.ViTConfig(
        hidden_size=D,
        intermediate_size=MLP,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        image_size=32,
        patch_size=16,
        layer_norm_eps=1e-6,  # AugReg's LayerNorm
        hidden_act="gelu_pytorch_tanh",  # AugReg's tanh GELU (our default)
    )
    ref = randomise(transformers.ViTModel(cfg, add_pooling_layer=True), seed=12)
    want = hf_embed(ref, images(32), pooled=False)
    np.savez(tmp_path / "L_16.npz", **hf_vit_to_augreg(numpy_state(ref), h=HEADS))
    ours = Ours("vit_with_embedding", "L/16", 32)
    np.testing.assert_allclose(ours.embed(tmp_path / "L_16.npz", images(32)), want, atol=TOL)
    ref.save_pretrained(tmp_path / "hf")  # model.safetensors and config.json (16 heads)
    got = ours.embed(tmp_path / "hf", images(32))
    np.testing.assert_allclose(got, want, atol=TOL)
