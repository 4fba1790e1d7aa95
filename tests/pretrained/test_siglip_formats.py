"""SigLIP / SigLIP 2 weights in each release format give transformers' embedding (within 1e-5).

References: transformers `SiglipVisionModel` / `SiglipModel` and `Siglip2VisionModel` /
`Siglip2Model` (fixed resolution: a full patch grid, attention mask all ones), tiny and random,
saved as safetensors by transformers itself; the same SigLIP weights renamed here to the
big_vision `.npz` layout (as the released files: `params/img/...`, blocks stacked along a layer
axis, the text tower, `t` and `b` beside them). timm's `vit_base_patch16_siglip_224` is not a
reference here: timm imports torchvision, which does not import beside this torch build.
"""

import numpy as np
import pytest
import torch
import transformers

from tests.pretrained.test_formats import Ours, numpy_state, randomise
from tests.pretrained.test_strict import tiny_config, zero_params
from universal_embedding import settings
from universal_embedding.pretrained import CheckpointError, load_pretrained, siglip
from universal_embedding.pretrained.common import flatten

HIDDEN, HEADS, MLP, LAYERS, PATCH, IMAGE = 32, 2, 64, 2, 8, 32
TOL = 1e-5
FAMILY = "siglip_vit_with_embedding"


def sizes(**extra):
    return dict(
        hidden_size=HIDDEN,
        intermediate_size=MLP,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        patch_size=PATCH,
        **extra,
    )


def text_sizes():
    return dict(hidden_size=24, intermediate_size=48, num_hidden_layers=1, num_attention_heads=2)


def normalised(x: torch.Tensor) -> np.ndarray:
    x = x.detach().numpy()
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images.transpose(0, 3, 1, 2).copy())


def siglip2_inputs(images: np.ndarray) -> dict:
    """Siglip2VisionModel's inputs for whole images: patches flattened (row, column, channel)."""
    n, h, w, c = images.shape
    g_h, g_w = h // PATCH, w // PATCH
    patches = images.reshape(n, g_h, PATCH, g_w, PATCH, c).transpose(0, 1, 3, 2, 4, 5)
    return {
        "pixel_values": torch.from_numpy(patches.reshape(n, g_h * g_w, -1).copy()),
        "pixel_attention_mask": torch.ones(n, g_h * g_w, dtype=torch.long),
        "spatial_shapes": torch.tensor([[g_h, g_w]] * n),
    }


def siglip2_embed(model, images):
    with torch.no_grad():
        return normalised(model(**siglip2_inputs(images)).pooler_output)


def siglip_embed(model, images):
    with torch.no_grad():
        return normalised(model(pixel_values=nchw(images)).pooler_output)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).normal(size=(3, IMAGE, IMAGE, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def ours():
    return Ours(FAMILY)


@pytest.fixture(scope="module")
def siglip_ref(images, tmp_path_factory):
    cfg = transformers.SiglipVisionConfig(image_size=IMAGE, **sizes())
    assert cfg.hidden_act == "gelu_pytorch_tanh" and cfg.layer_norm_eps == 1e-6
    model = randomise(transformers.SiglipVisionModel(cfg), seed=11)
    folder = tmp_path_factory.mktemp("hf_siglip")
    model.save_pretrained(folder)
    return {"want": siglip_embed(model, images), "state": numpy_state(model), "dir": folder}


# ----------------------------------------------------------------------------- Hugging Face


def test_hf_siglip_vision_model(siglip_ref, ours, images):
    got = ours.embed(siglip_ref["dir"] / "model.safetensors", images)
    np.testing.assert_allclose(got, siglip_ref["want"], atol=TOL)
    np.testing.assert_array_equal(ours.embed(siglip_ref["dir"], images), got)  # model folder


def test_hf_siglip_model_with_text_tower(ours, images, tmp_path):
    cfg = transformers.SiglipConfig(vision_config=sizes(image_size=IMAGE), text_config=text_sizes())
    model = randomise(transformers.SiglipModel(cfg), seed=12)
    model.save_pretrained(tmp_path)
    names = set(numpy_state(model))
    assert any(n.startswith("text_model.") for n in names) and "logit_bias" in names
    want = siglip_embed(model.vision_model, images)
    np.testing.assert_allclose(ours.embed(tmp_path, images), want, atol=TOL)


def test_hf_siglip2_vision_model(ours, images, tmp_path):
    cfg = transformers.Siglip2VisionConfig(num_patches=(IMAGE // PATCH) ** 2, **sizes())
    assert cfg.hidden_act == "gelu_pytorch_tanh" and cfg.layer_norm_eps == 1e-6
    model = randomise(transformers.Siglip2VisionModel(cfg), seed=13)
    model.save_pretrained(tmp_path)
    assert numpy_state(model)["embeddings.patch_embedding.weight"].ndim == 2  # a Linear
    want = siglip2_embed(model, images)
    np.testing.assert_allclose(ours.embed(tmp_path, images), want, atol=TOL)


def test_hf_siglip2_model_with_text_tower(ours, images, tmp_path):
    vision = sizes(num_patches=(IMAGE // PATCH) ** 2)
    cfg = transformers.Siglip2Config(vision_config=vision, text_config=text_sizes())
    model = randomise(transformers.Siglip2Model(cfg), seed=14)
    model.save_pretrained(tmp_path)
    want = siglip2_embed(model.vision_model, images)
    np.testing.assert_allclose(ours.embed(tmp_path, images), want, atol=TOL)


def test_siglip2_position_embedding_resized_like_transformers(tmp_path):
    """A 4x4-grid checkpoint into a 48px (6x6) model: Siglip2VisionModel resizes its grid to
    the image's (bilinear; antialiasing does nothing when enlarging), as the loader does."""
    cfg = transformers.Siglip2VisionConfig(num_patches=(IMAGE // PATCH) ** 2, **sizes())
    model = randomise(transformers.Siglip2VisionModel(cfg), seed=15)
    model.save_pretrained(tmp_path)
    big = np.random.default_rng(1).normal(size=(2, 48, 48, 3)).astype(np.float32)
    got = Ours(FAMILY, image_size=48).embed(tmp_path, big)
    np.testing.assert_allclose(got, siglip2_embed(model, big), atol=TOL)


# ----------------------------------------------------------------------------- big_vision


def hf_to_big_vision(sd: dict, root: str = "params/img/", scan: bool = True) -> dict:
    """HF SiglipVisionModel state -> big_vision SigLIP image keys (the released layout)."""
    d, h = HIDDEN, HEADS
    o = {
        "embedding/kernel": sd["embeddings.patch_embedding.weight"].transpose(2, 3, 1, 0),
        "embedding/bias": sd["embeddings.patch_embedding.bias"],
        "pos_embedding": sd["embeddings.position_embedding.weight"][None],
        "Transformer/encoder_norm/scale": sd["post_layernorm.weight"],
        "Transformer/encoder_norm/bias": sd["post_layernorm.bias"],
        "MAPHead_0/probe": sd["head.probe"],
        "MAPHead_0/LayerNorm_0/scale": sd["head.layernorm.weight"],
        "MAPHead_0/LayerNorm_0/bias": sd["head.layernorm.bias"],
    }
    pool = "MAPHead_0/MultiHeadDotProductAttention_0/"
    weights = np.split(sd["head.attention.in_proj_weight"], 3)
    biases = np.split(sd["head.attention.in_proj_bias"], 3)
    for name, w, b in zip(("query", "key", "value"), weights, biases, strict=True):
        o[f"{pool}{name}/kernel"], o[f"{pool}{name}/bias"] = w.T.reshape(d, h, -1), b.reshape(h, -1)
    o[pool + "out/kernel"] = sd["head.attention.out_proj.weight"].T.reshape(h, -1, d)
    o[pool + "out/bias"] = sd["head.attention.out_proj.bias"]
    for i, fc in enumerate(("fc1", "fc2")):
        o[f"MAPHead_0/MlpBlock_0/Dense_{i}/kernel"] = sd[f"head.mlp.{fc}.weight"].T
        o[f"MAPHead_0/MlpBlock_0/Dense_{i}/bias"] = sd[f"head.mlp.{fc}.bias"]
    blocks = [{} for _ in range(LAYERS)]
    for i, blk in enumerate(blocks):
        s = f"encoder.layers.{i}."
        for ln, theirs in (("LayerNorm_0", "layer_norm1"), ("LayerNorm_1", "layer_norm2")):
            blk[f"{ln}/scale"], blk[f"{ln}/bias"] = (
                sd[f"{s}{theirs}.weight"],
                sd[f"{s}{theirs}.bias"],
            )
        att = "MultiHeadDotProductAttention_0/"
        for name, t in (("query", "q"), ("key", "k"), ("value", "v")):
            blk[f"{att}{name}/kernel"] = sd[f"{s}self_attn.{t}_proj.weight"].T.reshape(d, h, -1)
            blk[f"{att}{name}/bias"] = sd[f"{s}self_attn.{t}_proj.bias"].reshape(h, -1)
        blk[att + "out/kernel"] = sd[f"{s}self_attn.out_proj.weight"].T.reshape(h, -1, d)
        blk[att + "out/bias"] = sd[f"{s}self_attn.out_proj.bias"]
        for j, fc in enumerate(("fc1", "fc2")):
            blk[f"MlpBlock_0/Dense_{j}/kernel"] = sd[f"{s}mlp.{fc}.weight"].T
            blk[f"MlpBlock_0/Dense_{j}/bias"] = sd[f"{s}mlp.{fc}.bias"]
    if scan:
        for key in blocks[0]:
            o[f"Transformer/encoderblock/{key}"] = np.stack([b[key] for b in blocks])
    else:
        for i, blk in enumerate(blocks):
            o.update({f"Transformer/encoderblock_{i}/{k}": v for k, v in blk.items()})
    return {root + k: v for k, v in o.items()}


def text_tower(rng) -> dict:
    """big_vision text-tower keys of a SigLIP file (scanned blocks), temperature and bias."""
    w = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    return {
        "params/txt/Embed_0/embedding": w(100, 24),
        "params/txt/pos_embedding": w(1, 16, 24),
        "params/txt/Encoder_0/encoderblock/LayerNorm_0/scale": w(1, 24),
        "params/txt/Encoder_0/encoder_norm/scale": w(24),
        "params/txt/head/kernel": w(24, 24),
        "params/t": w(1),
        "params/b": w(1),
    }


@pytest.fixture(scope="module")
def released_npz(siglip_ref, tmp_path_factory):
    """The released layout: params/img/ with scanned blocks, the text tower, t and b."""
    arrays = hf_to_big_vision(siglip_ref["state"])
    arrays.update(text_tower(np.random.default_rng(2)))
    path = tmp_path_factory.mktemp("bv") / "siglip2_b16_224.npz"
    np.savez(path, **arrays)
    return path


def test_big_vision_npz_released_layout(released_npz, siglip_ref, ours, images):
    got = ours.embed(released_npz, images)
    np.testing.assert_allclose(got, siglip_ref["want"], atol=TOL)
    # the same weights through the .npz and the Hugging Face file: the same numbers
    hf = ours.embed(siglip_ref["dir"], images)
    np.testing.assert_allclose(got, hf, atol=1e-6)


@pytest.mark.parametrize("root", ["img/", ""])
def test_big_vision_npz_per_layer_blocks_and_other_roots(siglip_ref, ours, images, tmp_path, root):
    np.savez(tmp_path / "b.npz", **hf_to_big_vision(siglip_ref["state"], root=root, scan=False))
    np.testing.assert_allclose(ours.embed(tmp_path / "b.npz", images), siglip_ref["want"], atol=TOL)


def test_big_vision_every_tensor_used_once(released_npz, ours):
    """Every image tensor is loaded (each layer of a stacked one), every text one skipped."""
    spec = settings.model_spec(ours.config)
    loaded = flatten(load_pretrained(ours.params, str(released_npz), spec)["backbone"])
    arrays = dict(np.load(released_npz))
    conv = siglip.convert_big_vision(arrays, HEADS)
    assert set(conv.params) == set(loaded) == set(flatten(ours.params["backbone"]))
    assert sorted(conv.ignored) == sorted(n for n in arrays if not n.startswith("params/img/"))
    assert conv.unrecognised == []
    used = {s.split("[")[0] for s in conv.sources.values()}
    assert used == {n for n in arrays if n.startswith("params/img/")}
    stacked = "params/img/Transformer/encoderblock/LayerNorm_1/scale"
    for i in range(LAYERS):
        path = f"Transformer/encoderblock_{i}/LayerNorm_2/scale"
        assert conv.sources[path] == f"{stacked}[{i}]"
        np.testing.assert_array_equal(loaded[path], arrays[stacked][i])


# ----------------------------------------------------------------------------- strictness


def test_swapping_two_same_shape_tensors_in_the_mapping_fails(
    released_npz, siglip_ref, images, monkeypatch
):
    """The references catch a mapping that swaps two tensors of one shape (attention query and
    key; the two LayerNorms of a block; the pooling head's query and key)."""
    ours = Ours(FAMILY)
    rules = siglip.HF_RULES
    q = next(i for i, r in enumerate(rules) if r[0].endswith(r"q_proj\.weight"))
    k = next(i for i, r in enumerate(rules) if r[0].endswith(r"k_proj\.weight"))
    swapped = list(rules)
    swapped[q] = (rules[q][0], rules[k][1], rules[q][2])
    swapped[k] = (rules[k][0], rules[q][1], rules[k][2])
    monkeypatch.setattr(siglip, "HF_RULES", swapped)
    got = ours.embed(siglip_ref["dir"], images)
    assert np.abs(got - siglip_ref["want"]).max() > 100 * TOL
    monkeypatch.undo()

    bv = siglip.BIG_VISION_RULES
    ln0 = next(i for i, r in enumerate(bv) if "LayerNorm_0/(scale" in r[0] and "encoder" in r[0])
    ln1 = next(i for i, r in enumerate(bv) if "LayerNorm_1/(scale" in r[0])
    swapped = list(bv)
    swapped[ln0] = (bv[ln0][0], bv[ln1][1], bv[ln0][2])
    swapped[ln1] = (bv[ln1][0], bv[ln0][1], bv[ln1][2])
    monkeypatch.setattr(siglip, "BIG_VISION_RULES", swapped)
    got = ours.embed(released_npz, images)
    assert np.abs(got - siglip_ref["want"]).max() > 100 * TOL
    monkeypatch.undo()

    qkv = [i for i, r in enumerate(rules) if isinstance(r[1], tuple)]
    swapped = list(rules)
    for i in qkv:  # the pooling head's fused in_proj split as key, query, value
        query, key, value = rules[i][1]
        swapped[i] = (rules[i][0], (key, query, value), rules[i][2])
    monkeypatch.setattr(siglip, "HF_RULES", swapped)
    got = ours.embed(siglip_ref["dir"], images)
    assert np.abs(got - siglip_ref["want"]).max() > 100 * TOL


def test_missing_unknown_and_misshaped_tensors_are_named(siglip_ref, ours, tmp_path):
    spec = settings.model_spec(ours.config)
    arrays = hf_to_big_vision(siglip_ref["state"])
    del arrays["params/img/MAPHead_0/LayerNorm_0/bias"]
    arrays["params/img/head/kernel"] = np.ones((HIDDEN, 10), np.float32)  # a classifier head
    arrays["opt/state"] = np.ones(3, np.float32)  # not image, text, t or b
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CheckpointError) as e:
        load_pretrained(ours.params, str(tmp_path / "bad.npz"), spec)
    text = str(e.value)
    assert "missing in checkpoint (1):\n    MAPHead_0/LayerNorm_0/bias (32,)" in text
    assert "params/img/head/kernel (not a known tensor name)" in text
    assert "opt/state (not a known tensor name)" in text

    arrays = hf_to_big_vision(siglip_ref["state"])
    arrays["params/img/MAPHead_0/probe"] = np.ones((1, 1, 16), np.float32)
    np.savez(tmp_path / "narrow.npz", **arrays)
    with pytest.raises(
        CheckpointError,
        match=r"MAPHead_0/probe \(checkpoint: params/img/MAPHead_0/probe\): "
        r"checkpoint \(1, 1, 16\), model \(1, 1, 32\)",
    ):
        load_pretrained(ours.params, str(tmp_path / "narrow.npz"), spec)


def test_a_block_both_stacked_and_per_layer_is_refused(siglip_ref, ours, tmp_path):
    arrays = hf_to_big_vision(siglip_ref["state"])
    per_layer = hf_to_big_vision(siglip_ref["state"], scan=False)
    name = "params/img/Transformer/encoderblock_1/LayerNorm_0/scale"
    arrays[name] = per_layer[name]
    np.savez(tmp_path / "twice.npz", **arrays)
    spec = settings.model_spec(ours.config)
    with pytest.raises(CheckpointError) as e:
        load_pretrained(ours.params, str(tmp_path / "twice.npz"), spec)
    message = str(e.value)
    assert "\n" not in message
    assert "params/img/Transformer/encoderblock/LayerNorm_0/scale[1]" in message
    assert name in message and "Transformer/encoderblock_1/LayerNorm_0/scale" in message


def test_siglip_files_refused_by_other_families_and_sizes(released_npz, siglip_ref):
    vit = Ours("vit_with_embedding")
    spec = settings.model_spec(vit.config)
    with pytest.raises(CheckpointError, match="big_vision SigLIP weights, which load into "):
        load_pretrained(vit.params, str(released_npz), spec)
    with pytest.raises(CheckpointError, match="Hugging Face SigLIP weights"):
        load_pretrained(vit.params, str(siglip_ref["dir"]), spec)
    config = tiny_config(FAMILY, layers=3)
    with pytest.raises(CheckpointError, match="The checkpoint holds a custom size .*2 layers"):
        load_pretrained(zero_params(config), str(released_npz), settings.model_spec(config))
