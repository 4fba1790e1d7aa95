"""Each checkpoint format loads to the same backbone_out as an independent implementation.

References: Hugging Face transformers `CLIPVisionModel` (for HF CLIP safetensors and, with its
weights renamed to OpenAI keys here in the test, for OpenAI .npy/.pt/.bin) and `ViTModel` with
AugReg's LayerNorm eps 1e-6 and tanh GELU (for HF ViT safetensors and, renamed to AugReg keys
here, for AugReg .npz). Tiny randomly initialised models; max abs difference <= 1e-4.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from safetensors.numpy import save_file

from universal_embedding import settings
from universal_embedding.configs.base import get_config
from universal_embedding.models import embedding_model as em
from universal_embedding.pretrained import load_pretrained
from universal_embedding.pretrained.common import resize_position_embedding

HIDDEN, HEADS, MLP, LAYERS, PATCH, IMAGE = 32, 2, 64, 2, 8, 32
TOL = 1e-4


def tiny_config(model_class):
    c = get_config()
    c.model_class = model_class
    c.model.hidden_size, c.model.num_heads, c.model.mlp_dim = HIDDEN, HEADS, MLP
    c.model.num_layers, c.model.patch_size = LAYERS, PATCH
    return c


class Ours:
    """Our model for a config and image size: zero params to load into, one jitted apply."""

    def __init__(self, model_class, image_size=IMAGE):
        self.config = tiny_config(model_class)
        model = em.build_model(settings.model_spec(self.config), {"cars": 3})
        images = jnp.zeros((1, image_size, image_size, 3))
        shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), images, head="*"))
        self.params = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes["params"])
        self.apply = jax.jit(lambda p, x: model.apply({"params": p}, x)["backbone_out"])

    def embed(self, path, images):
        params = load_pretrained(self.params, str(path), settings.model_spec(self.config))
        assert params["heads"] is self.params["heads"]  # heads and projection untouched
        assert params["projection"] is self.params["projection"]
        return np.asarray(self.apply(params, images))


def randomise(model, seed):
    """Every HF parameter random (LayerNorm scales around 1) so no mapping hides behind 0/1."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.2)
            if "norm" in name and name.endswith("weight"):
                p.add_(1.0)
    return model.eval()


def hf_embed(model, images, pooled):
    with torch.no_grad():
        out = model(pixel_values=torch.from_numpy(images.transpose(0, 3, 1, 2)))
    x = out.pooler_output if pooled else out.last_hidden_state[:, 0]
    x = x.numpy()
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def fused_qkv(sd, name):
    """The q, k and v tensors `name` ('{}' -> q, k, v) as one fused in-projection (axis 0)."""
    return np.concatenate([sd[name.format(n)] for n in "qkv"], axis=0)


def numpy_state(model):
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(size=(3, IMAGE, IMAGE, 3)).astype(np.float32)


# ----------------------------------------------------------------------------- CLIP


@pytest.fixture(scope="module")
def clip_ref(images, tmp_path_factory):
    cfg = transformers.CLIPVisionConfig(
        hidden_size=HIDDEN,
        intermediate_size=MLP,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        image_size=IMAGE,
        patch_size=PATCH,
    )
    assert cfg.hidden_act == "quick_gelu" and cfg.layer_norm_eps == 1e-5
    model = randomise(transformers.CLIPVisionModel(cfg), seed=1)
    folder = tmp_path_factory.mktemp("hf_clip")
    model.save_pretrained(folder)
    return {
        "want": hf_embed(model, images, pooled=True),
        "state": numpy_state(model),
        "dir": folder,
    }


@pytest.fixture(scope="module")
def clip_ours():
    return Ours("clip_vit_with_embedding")


def hf_clip_to_openai(sd):
    """HF CLIPVisionModel state -> OpenAI visual keys (q/k/v fused into in_proj)."""
    o = {
        "conv1.weight": sd["embeddings.patch_embedding.weight"],
        "class_embedding": sd["embeddings.class_embedding"],
        "positional_embedding": sd["embeddings.position_embedding.weight"],
    }
    for ours, theirs in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        o[f"{ours}.weight"], o[f"{ours}.bias"] = sd[f"{theirs}.weight"], sd[f"{theirs}.bias"]
    layers = len({k.split(".")[2] for k in sd if k.startswith("encoder.layers.")})
    for i in range(layers):
        h, t = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            o[f"{t}attn.in_proj_{kind}"] = fused_qkv(sd, h + "self_attn.{}_proj." + kind)
            o[f"{t}attn.out_proj.{kind}"] = sd[f"{h}self_attn.out_proj.{kind}"]
            o[f"{t}ln_1.{kind}"] = sd[f"{h}layer_norm1.{kind}"]
            o[f"{t}ln_2.{kind}"] = sd[f"{h}layer_norm2.{kind}"]
            o[f"{t}mlp.c_fc.{kind}"] = sd[f"{h}mlp.fc1.{kind}"]
            o[f"{t}mlp.c_proj.{kind}"] = sd[f"{h}mlp.fc2.{kind}"]
    rng = np.random.default_rng(5)
    full = {f"visual.{k}": v for k, v in o.items()}
    full["visual.proj"] = rng.normal(size=(HIDDEN, 16)).astype(np.float32)
    # A text tower whose names collide with the visual ones once the prefix is dropped.
    full["positional_embedding"] = rng.normal(size=(77, 24)).astype(np.float32)
    full["transformer.resblocks.0.attn.in_proj_weight"] = np.ones((72, 24), np.float32)
    full["token_embedding.weight"] = np.ones((100, 24), np.float32)
    full["ln_final.weight"] = np.ones(24, np.float32)
    full["text_projection"] = np.ones((24, 16), np.float32)
    full["logit_scale"] = np.float32(4.6)
    return full


def test_hf_clip_safetensors(clip_ref, clip_ours, images):
    got = clip_ours.embed(clip_ref["dir"] / "model.safetensors", images)
    np.testing.assert_allclose(got, clip_ref["want"], atol=TOL)
    np.testing.assert_array_equal(clip_ours.embed(clip_ref["dir"], images), got)  # model folder


def test_hf_clip_hub_layout(clip_ref, clip_ours, images, tmp_path):
    """CLIPModel files on the Hub: 'vision_model.' prefix plus text tower and projections."""
    state = {f"vision_model.{k}": v for k, v in clip_ref["state"].items()}
    state["text_model.encoder.layers.0.self_attn.q_proj.weight"] = np.ones((8, 8), np.float32)
    state["visual_projection.weight"] = np.ones((16, HIDDEN), np.float32)
    state["logit_scale"] = np.array(4.6, np.float32)
    save_file(state, str(tmp_path / "clip.safetensors"))
    np.testing.assert_allclose(
        clip_ours.embed(tmp_path / "clip.safetensors", images), clip_ref["want"], atol=TOL
    )


def test_openai_npy(clip_ref, clip_ours, images, tmp_path):
    np.save(tmp_path / "vit_b16.npy", hf_clip_to_openai(clip_ref["state"]), allow_pickle=True)
    got = clip_ours.embed(tmp_path / "vit_b16.npy", images)
    np.testing.assert_allclose(got, clip_ref["want"], atol=TOL)


def torchscript_holding(state):
    """A TorchScript archive whose state_dict has these keys (like OpenAI's released .pt)."""
    root = torch.nn.Module()
    for key, value in state.items():
        *path, leaf = key.split(".")
        module = root
        for part in path:
            if not hasattr(module, part):
                module.add_module(part, torch.nn.Module())
            module = getattr(module, part)
        module.register_parameter(leaf, torch.nn.Parameter(value, requires_grad=False))
    return torch.jit.script(root)


@pytest.mark.parametrize("kind", ["zip", "torchscript"])  # legacy: test_untrusted_weights.py
def test_openai_torch_checkpoints(clip_ref, clip_ours, images, tmp_path, kind):
    openai = hf_clip_to_openai(clip_ref["state"])
    state = {k: torch.from_numpy(np.array(v)) for k, v in openai.items()}
    path = tmp_path / f"{kind}.bin"
    if kind == "torchscript":
        torchscript_holding(state).save(str(path))
    else:  # open_clip training checkpoints wrap the state dict, keys prefixed 'module.'
        wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}
        torch.save(wrapped, path, _use_new_zipfile_serialization=kind == "zip")
    np.testing.assert_allclose(clip_ours.embed(path, images), clip_ref["want"], atol=TOL)


def test_hf_config_heads_checked(clip_ref, clip_ours, tmp_path):
    state = clip_ref["state"]
    save_file(state, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"vision_config": {"num_attention_heads": 4}}))
    with pytest.raises(ValueError, match="says 4 attention heads, the model has 2"):
        load_pretrained(clip_ours.params, str(tmp_path), settings.model_spec(clip_ours.config))


# ----------------------------------------------------------------------------- ViT / AugReg


def hf_vit(image_size, seed):
    cfg = transformers.ViTConfig(
        hidden_size=HIDDEN,
        intermediate_size=MLP,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        image_size=image_size,
        patch_size=PATCH,
        layer_norm_eps=1e-6,  # AugReg's LayerNorm
        hidden_act="gelu_pytorch_tanh",  # tanh GELU, as AugReg (our default)
    )
    return randomise(transformers.ViTModel(cfg, add_pooling_layer=True), seed)


@pytest.fixture(scope="module")
def vit_ref(images, tmp_path_factory):
    model = hf_vit(IMAGE, seed=2)
    folder = tmp_path_factory.mktemp("hf_vit")
    model.save_pretrained(folder)
    state = numpy_state(model)
    assert any(k.startswith("pooler.") for k in state)  # the loader must skip the pooler
    return {"want": hf_embed(model, images, pooled=False), "state": state, "dir": folder}


@pytest.fixture(scope="module")
def vit_ours():
    return Ours("vit_with_embedding")


def hf_vit_to_augreg(sd, h=HEADS):
    """HF ViTModel state (transformers 5 module names) -> AugReg npz keys, plus an i21k head
    (hidden size and depth read off the state; `h` attention heads)."""
    d = sd["embeddings.cls_token"].shape[-1]
    layers = len({k.split(".")[1] for k in sd if k.startswith("layers.")})
    o = {
        "embedding/kernel": sd["embeddings.patch_embeddings.projection.weight"].transpose(
            2, 3, 1, 0
        ),
        "embedding/bias": sd["embeddings.patch_embeddings.projection.bias"],
        "cls": sd["embeddings.cls_token"],
        "Transformer/posembed_input/pos_embedding": sd["embeddings.position_embeddings"],
        "Transformer/encoder_norm/scale": sd["layernorm.weight"],
        "Transformer/encoder_norm/bias": sd["layernorm.bias"],
        "head/kernel": np.ones((d, 10), np.float32),
        "head/bias": np.zeros(10, np.float32),
    }
    for i in range(layers):
        s, t = f"layers.{i}.", f"Transformer/encoderblock_{i}/"
        att = t + "MultiHeadDotProductAttention_1/"
        for ours, theirs in (("query", "q"), ("key", "k"), ("value", "v")):
            o[f"{att}{ours}/kernel"] = sd[f"{s}attention.{theirs}_proj.weight"].T.reshape(d, h, -1)
            o[f"{att}{ours}/bias"] = sd[f"{s}attention.{theirs}_proj.bias"].reshape(h, -1)
        o[att + "out/kernel"] = sd[f"{s}attention.o_proj.weight"].T.reshape(h, -1, d)
        o[att + "out/bias"] = sd[f"{s}attention.o_proj.bias"]
        for ours, theirs in (
            ("LayerNorm_0", "layernorm_before"),
            ("LayerNorm_2", "layernorm_after"),
        ):
            o[f"{t}{ours}/scale"] = sd[f"{s}{theirs}.weight"]
            o[f"{t}{ours}/bias"] = sd[f"{s}{theirs}.bias"]
        for ours, theirs in (("Dense_0", "fc1"), ("Dense_1", "fc2")):
            o[f"{t}MlpBlock_3/{ours}/kernel"] = sd[f"{s}mlp.{theirs}.weight"].T
            o[f"{t}MlpBlock_3/{ours}/bias"] = sd[f"{s}mlp.{theirs}.bias"]
    return o


def test_hf_vit_safetensors(vit_ref, vit_ours, images):
    got = vit_ours.embed(vit_ref["dir"] / "model.safetensors", images)
    np.testing.assert_allclose(got, vit_ref["want"], atol=TOL)


def test_augreg_npz(vit_ref, vit_ours, images, tmp_path):
    np.savez(tmp_path / "B_16-i21k.npz", **hf_vit_to_augreg(vit_ref["state"]))
    got = vit_ours.embed(tmp_path / "B_16-i21k.npz", images)
    np.testing.assert_allclose(got, vit_ref["want"], atol=TOL)


def test_augreg_npz_position_embedding_resized(vit_ref, tmp_path):
    """A 32px (4x4 grid) checkpoint into a 48px (6x6) model, checked against torch's bilinear."""
    augreg = hf_vit_to_augreg(vit_ref["state"])
    np.savez(tmp_path / "ckpt.npz", **augreg)
    ours = Ours("vit_with_embedding", image_size=48)
    params = load_pretrained(
        ours.params, str(tmp_path / "ckpt.npz"), settings.model_spec(ours.config)
    )
    got = np.asarray(params["backbone"]["Transformer"]["posembed_input"]["pos_embedding"])
    old = augreg["Transformer/posembed_input/pos_embedding"]
    assert got.shape == (1, 37, HIDDEN)
    np.testing.assert_array_equal(got[0, 0], old[0, 0])  # class row kept as is
    grid = torch.from_numpy(old[0, 1:].reshape(1, 4, 4, HIDDEN).transpose(0, 3, 1, 2))
    want = torch.nn.functional.interpolate(grid, size=(6, 6), mode="bilinear", align_corners=False)
    want = want.numpy().transpose(0, 2, 3, 1).reshape(36, HIDDEN)
    np.testing.assert_allclose(got[0, 1:], want, atol=1e-6)
    np.testing.assert_allclose(got, resize_position_embedding(old, 37), atol=0)
    # End to end: HF ViT at 48px holding the same resized position embedding.
    ref = hf_vit(48, seed=0)
    state = {k: torch.from_numpy(np.asarray(v)) for k, v in vit_ref["state"].items()}
    state["embeddings.position_embeddings"] = torch.from_numpy(got.copy())
    ref.load_state_dict(state)
    x = np.random.default_rng(3).normal(size=(2, 48, 48, 3)).astype(np.float32)
    np.testing.assert_allclose(
        np.asarray(ours.apply(params, x)), hf_embed(ref, x, pooled=False), atol=TOL
    )
