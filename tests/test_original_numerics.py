"""The original UnED code's numerics: tanh GELU in the ViT, and its evaluation preprocessing.

References written here, independent of the package: a float64 numpy forward pass of the ViT
(AugReg parameter names) with the tanh or the erf GELU, and the original's evaluation
preprocessing (`tf.io.decode_jpeg` with TensorFlow's default DCT; the shorter side resized to
S and the longer to int(long / short * S), bilinear; center crop; (x / 255 - mean) / std).
Embeddings of the same weights must agree within 1e-5.
"""

from __future__ import annotations

import io
import json
import os

import jax
import numpy as np
import pytest
import tensorflow as tf
from flax import traverse_util
from PIL import Image
from scipy.special import erf

from universal_embedding import Embedder, settings
from universal_embedding.configs import config_knn_vit, tiny
from universal_embedding.data import (
    embed_inputs,
    input_pipeline,
    normalization,
    preprocess,
    registry,
    tfrecords,
)
from universal_embedding.loading import exported
from universal_embedding.models import embedding_model

S = 32  # image size of the tiny model
# (h, w) where int(long / short * S) and round(long / short * S) differ, both orientations.
SIZES = [(12, 19), (19, 12), (20, 33), (32, 32)]
TOL = 1e-5


# ----------------------------------------------------------------------------- references


def gelu(x: np.ndarray, approximate: bool) -> np.ndarray:
    if approximate:
        return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def layer_norm(x: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-6) * scale + bias


def reference_embeddings(flat: dict, images: np.ndarray, approximate: bool) -> dict:
    """float64 forward pass from '/'-joined AugReg names (+ projection): both embeddings."""
    p = {k: np.asarray(v, np.float64) for k, v in flat.items()}
    kernel = p["backbone/embedding/kernel"]  # [P, P, 3, D]
    size, dim = kernel.shape[0], kernel.shape[-1]
    b, h, w, c = images.shape
    patches = images.astype(np.float64).reshape(b, h // size, size, w // size, size, c)
    patches = patches.transpose(0, 1, 3, 2, 4, 5).reshape(b, -1, size * size * c)
    x = patches @ kernel.reshape(-1, dim) + p["backbone/embedding/bias"]
    x = np.concatenate([np.broadcast_to(p["backbone/cls"], (b, 1, dim)), x], axis=1)
    x = x + p["backbone/Transformer/posembed_input/pos_embedding"]
    i = 0
    while f"backbone/Transformer/encoderblock_{i}/LayerNorm_0/scale" in p:
        t = f"backbone/Transformer/encoderblock_{i}/"
        y = layer_norm(x, p[t + "LayerNorm_0/scale"], p[t + "LayerNorm_0/bias"])
        a = t + "MultiHeadDotProductAttention_1/"
        q, k, v = (
            np.einsum("btd,dhe->bthe", y, p[f"{a}{n}/kernel"]) + p[f"{a}{n}/bias"]
            for n in ("query", "key", "value")
        )
        logits = np.einsum("bqhe,bkhe->bhqk", q, k) / np.sqrt(q.shape[-1])
        weights = np.exp(logits - logits.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        att = np.einsum("bhqk,bkhe->bqhe", weights, v)
        x = x + np.einsum("bqhe,hed->bqd", att, p[a + "out/kernel"]) + p[a + "out/bias"]
        y = layer_norm(x, p[t + "LayerNorm_2/scale"], p[t + "LayerNorm_2/bias"])
        m = t + "MlpBlock_3/"
        y = gelu(y @ p[m + "Dense_0/kernel"] + p[m + "Dense_0/bias"], approximate)
        x = x + y @ p[m + "Dense_1/kernel"] + p[m + "Dense_1/bias"]
        i += 1
    n = "backbone/Transformer/encoder_norm/"
    out = layer_norm(x[:, 0], p[n + "scale"], p[n + "bias"])
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    proj = out @ p["projection/kernel"] + p["projection/bias"]
    return {"backbone_out": out, "projected": proj / np.linalg.norm(proj, axis=1, keepdims=True)}


def original_eval_pixels(raw: bytes, size: int, norm: str) -> np.ndarray:
    """The original's evaluation preprocessing of one encoded image -> float32 [size, size, 3]."""
    image = tf.io.decode_jpeg(raw, channels=3)
    h, w = int(image.shape[0]), int(image.shape[1])
    if h <= w:
        new_h, new_w = size, int(w / h * size)
    else:
        new_h, new_w = int(h / w * size), size
    image = tf.image.resize(image, [new_h, new_w], method=tf.image.ResizeMethod.BILINEAR)
    if new_h > new_w:
        image = tf.image.crop_to_bounding_box(image, (new_h - new_w) // 2, 0, new_w, new_w)
    else:
        image = tf.image.crop_to_bounding_box(image, 0, (new_w - new_h) // 2, new_h, new_h)
    mean, std = normalization.mean_std(norm)
    return ((image.numpy() / 255.0 - np.array(mean)) / np.array(std)).astype(np.float32)


# ----------------------------------------------------------------------------- fixtures


def tiny_config(gelu_approximate: bool = True):
    c = tiny.tiny_vit(config_knn_vit.get_config(), image_size=S, patch_size=8)
    c.model.num_layers = 2
    c.model.gelu_approximate = gelu_approximate
    return c


@pytest.fixture(scope="module")
def params():
    """Random params of the tiny ViT + projection; MLP pre-activations spread over |x| ~ 1..3
    and a wide second MLP layer, so the GELU form moves the embeddings by > 1e-4."""
    model = embedding_model.build_model(settings.model_spec(tiny_config()), None)
    images = np.zeros((1, S, S, 3), np.float32)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), images))["params"]
    rng = np.random.default_rng(0)
    flat = {}
    for name, s in traverse_util.flatten_dict(
        jax.tree.map(lambda s: np.zeros(s.shape), shapes), sep="/"
    ).items():
        value = rng.normal(size=s.shape) * 0.3
        value *= 1.5 if "Dense_0" in name else 10.0 if "Dense_1" in name else 1.0
        if name.endswith("/scale"):
            value += 1.0
        flat[name] = value.astype(np.float32)
    return flat


def smooth_jpeg(h: int, w: int, seed: int) -> bytes:
    """A photo-like JPEG (smooth gradients plus noise): the DCT method changes its pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    base = 128 + 90 * np.sin(xx[..., None] / (3 + seed) + yy[..., None] / 5 + np.arange(3))
    pixels = np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=90)
    return out.getvalue()


@pytest.fixture(scope="module")
def jpegs():
    return [smooth_jpeg(h, w, i) for i, (h, w) in enumerate(SIZES)]


def ours(config, flat, images, embedding):
    model = embedding_model.build_model(settings.model_spec(config), None)
    out = model.apply({"params": traverse_util.unflatten_dict(flat, sep="/")}, images)
    return np.asarray(out[embedding])


# ----------------------------------------------------------------------------- the ViT's GELU


@pytest.mark.parametrize("approximate", [True, False])
def test_vit_gelu_matches_the_reference_of_its_form(params, approximate):
    """Default: tanh GELU (flax / Scenic / AugReg); gelu_approximate=False: exact erf."""
    images = np.random.default_rng(1).normal(size=(3, S, S, 3)).astype(np.float32)
    config = tiny_config() if approximate else tiny_config(gelu_approximate=False)
    want = reference_embeddings(params, images, approximate)
    other = reference_embeddings(params, images, not approximate)
    for embedding in ("backbone_out", "projected"):
        got = ours(config, params, images, embedding)
        np.testing.assert_allclose(got, want[embedding], atol=TOL)
        assert np.abs(other[embedding] - want[embedding]).max() > 10 * TOL  # the form is visible


def test_default_config_is_the_tanh_gelu_and_clip_ignores_the_switch():
    assert tiny_config().model.gelu_approximate is True
    vit = embedding_model.build_model(settings.model_spec(tiny_config(False)), None)
    assert vit.backbone.gelu_approximate is False
    c = tiny_config(False)
    c.model_class = "clip_vit_with_embedding"  # quick-GELU, no switch
    clip = embedding_model.build_model(settings.model_spec(c), None).backbone
    assert not hasattr(clip, "gelu_approximate")


# ----------------------------------------------------------------------------- preprocessing


def test_tensorflow_default_jpeg_decode_is_the_fast_integer_dct(jpegs):
    """decode_image / decode_jpeg default == INTEGER_FAST, and differs from the accurate DCT."""
    raw = smooth_jpeg(48, 64, 7)
    ours_pixels = preprocess.decode(tf.constant(raw)).numpy()
    fast = tf.io.decode_jpeg(raw, channels=3, dct_method="INTEGER_FAST").numpy()
    accurate = tf.io.decode_jpeg(raw, channels=3, dct_method="INTEGER_ACCURATE").numpy()
    np.testing.assert_array_equal(ours_pixels, tf.io.decode_jpeg(raw, channels=3).numpy())
    np.testing.assert_array_equal(ours_pixels, fast)
    assert (ours_pixels != accurate).any()


@pytest.mark.parametrize("hw", [(300, 451), (451, 300), (300, 449)])
def test_eval_resize_truncates_the_long_side_as_the_original(hw):
    """300 x 451 at 224: int(451 / 300 * 224) = 336 (rounding gave 337 and another crop);
    300 x 449 (335.25: both give 335) is the control."""
    h, w = hw
    raw = smooth_jpeg(h, w, 3)
    got = embed_inputs.eval_image(raw, image_size=224, normalization="imagenet")
    np.testing.assert_allclose(got, original_eval_pixels(raw, 224, "imagenet"), atol=TOL)
    new = preprocess.eval_size(tf.constant([h, w]), 224).numpy().tolist()
    long_side = int(max(h, w) / min(h, w) * 224)  # 336, 336, 335
    assert new == ([224, long_side] if h <= w else [long_side, 224])


def test_every_evaluation_path_preprocesses_as_the_original(jpegs, tmp_path):
    """TFRecord eval stream, image folders, Embedder inputs (path, bytes), the SavedModel graph."""
    want = np.stack([original_eval_pixels(raw, S, "clip") for raw in jpegs])
    names = []
    for i, raw in enumerate(jpegs):
        names.append(f"cars/test/{i:03d}.jpg")
        os.makedirs(tmp_path / "img" / "cars" / "test", exist_ok=True)
        (tmp_path / "img" / names[-1]).write_bytes(raw)
    info = tmp_path / "info.json"
    info.write_text(json.dumps([{"path": n, "class_id": i} for i, n in enumerate(names)]))
    prefix = registry.tfrecord_prefix(str(tmp_path / "tfds"), "cars", "test")
    tfrecords.convert(str(info), prefix, str(tmp_path / "img"), 1, progress=False)

    args = dict(image_size=S, normalization="clip")
    records = next(input_pipeline.eval_batches(str(tmp_path / "tfds"), "cars", "test",
                                               batch_size=len(jpegs), **args))  # fmt: skip
    folder = next(input_pipeline.folder_batches(str(tmp_path / "img"), names,
                                                batch_size=len(jpegs), **args))  # fmt: skip
    paths = [embed_inputs.eval_image(str(tmp_path / "img" / n), **args) for n in names]
    raws = [embed_inputs.eval_image(raw, **args) for raw in jpegs]
    graph = embed_inputs.serving_images(tf.constant(jpegs), **args).numpy()
    for got in (records["images"], folder["images"], np.stack(paths), np.stack(raws), graph):
        np.testing.assert_allclose(got, want, atol=TOL)


# ----------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("approximate", [True, False, None])  # None: config.json of before
def test_exported_model_embeds_as_the_independent_reader(params, jpegs, tmp_path, approximate):
    """Embedder on JPEG files == numpy ViT on the original's preprocessing (<= 1e-5). A
    config.json written before model.gelu_approximate existed reloads with the erf GELU."""
    config = tiny_config(approximate is not False)
    out = exported.save(
        str(tmp_path / "m"),
        traverse_util.unflatten_dict(params, sep="/"),
        settings.model_spec(config),
        "projected",
    )
    if approximate is None:
        meta = json.loads((tmp_path / "m" / "config.json").read_text())
        del meta["model"]["gelu_approximate"]
        (tmp_path / "m" / "config.json").write_text(json.dumps(meta))
    files = []
    for i, raw in enumerate(jpegs):
        files.append(str(tmp_path / f"{i}.jpg"))
        with open(files[-1], "wb") as f:
            f.write(raw)
    embedder = Embedder.from_pretrained(out)
    assert embedder.spec.gelu_approximate is bool(approximate)
    got = embedder.embed(files, batch_size=2)
    norm = embedder.normalization
    pixels = np.stack([original_eval_pixels(raw, S, norm) for raw in jpegs])
    want = reference_embeddings(params, pixels, approximate=bool(approximate))["projected"]
    np.testing.assert_allclose(got, want, atol=TOL)
