"""Strict loading: errors list names and shapes; sizes, families and files are checked."""

import json
import sys

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from universal_embedding import settings
from universal_embedding.configs.base import get_config
from universal_embedding.models import embedding_model as em
from universal_embedding.pretrained import CheckpointError, load_pretrained
from universal_embedding.pretrained.common import (
    flatten,
    resize_bilinear,
    resize_position_embedding,
)
from universal_embedding.pretrained.files import read_checkpoint


def tiny_config(model_class="vit_with_embedding", layers=2):
    c = get_config()
    c.model_class = model_class
    c.model.hidden_size, c.model.num_heads, c.model.mlp_dim = 32, 2, 64
    c.model.num_layers, c.model.patch_size = layers, 8
    return c


def zero_params(config, image_size=32):
    """Params of the right shapes without compiling an init (loading replaces the backbone)."""
    model = em.build_model(settings.model_spec(config), {"cars": 3})
    images = jnp.zeros((1, image_size, image_size, 3))
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), images, head="*"))
    return jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes["params"])


def augreg_arrays(config, seed=0):
    """Random AugReg-named arrays for the model `config` describes (+ an i21k head)."""
    rng = np.random.default_rng(seed)
    flat = flatten(zero_params(config)["backbone"])
    arrays = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in flat.items()}
    arrays["head/kernel"] = np.ones((32, 5), np.float32)
    arrays["head/bias"] = np.zeros(5, np.float32)
    return arrays


@pytest.fixture(scope="module")
def vit():
    config = tiny_config()
    return config, zero_params(config)


def test_augreg_round_trip_loads_every_tensor_exactly(vit, tmp_path):
    config, params = vit
    arrays = augreg_arrays(config)
    np.savez(tmp_path / "ckpt.npz", **arrays)
    loaded = load_pretrained(params, str(tmp_path / "ckpt.npz"), settings.model_spec(config))
    got = flatten(loaded["backbone"])
    assert set(got) == set(arrays) - {"head/kernel", "head/bias"}
    for name, value in got.items():
        assert value.dtype == jnp.float32
        np.testing.assert_array_equal(value, arrays[name])
    assert loaded["heads"] is params["heads"] and loaded["projection"] is params["projection"]
    # Abstract params (jax.eval_shape) are enough to load into: only shapes are read.
    abstract = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), params)
    from_abstract = flatten(
        load_pretrained(abstract, str(tmp_path / "ckpt.npz"), settings.model_spec(config))[
            "backbone"
        ]
    )
    for name, value in from_abstract.items():
        np.testing.assert_array_equal(value, arrays[name])


def test_missing_unexpected_and_misshaped_are_all_listed(vit, tmp_path):
    config, params = vit
    arrays = augreg_arrays(config)
    del arrays["Transformer/encoderblock_1/LayerNorm_2/bias"]
    arrays["Transformer/encoderblock_1/extra/kernel"] = np.ones((3, 4), np.float32)
    arrays["Transformer/encoder_norm/scale"] = np.ones(31, np.float32)
    arrays["optimizer/step"] = np.ones(1, np.float32)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(CheckpointError) as err:
        load_pretrained(params, str(tmp_path / "bad.npz"), settings.model_spec(config))
    msg = str(err.value)
    assert "bad.npz does not fit" in msg
    assert (
        "missing in checkpoint (1):\n    Transformer/encoderblock_1/LayerNorm_2/bias (32,)" in msg
    )
    assert "Transformer/encoderblock_1/extra/kernel (3, 4)" in msg
    assert "optimizer/step (not a known tensor name)" in msg
    assert "unexpected in checkpoint (2)" in msg
    assert "Transformer/encoder_norm/scale: checkpoint (31,), model (32,)" in msg
    assert "Nothing was loaded" in msg


def test_model_size_mismatch_names_both_sizes(vit, tmp_path):
    config, params = vit
    np.savez(tmp_path / "deeper.npz", **augreg_arrays(tiny_config(layers=3)))
    with pytest.raises(CheckpointError) as err:
        load_pretrained(params, str(tmp_path / "deeper.npz"), settings.model_spec(config))
    msg = str(err.value)
    assert "holds a custom size (hidden 32, 2 heads, mlp 64, 3 layers, patch 8)" in msg
    assert "the model is a custom size (hidden 32, 2 heads, mlp 64, 2 layers, patch 8)" in msg
    assert "config.model_type='B/16'" in msg
    assert "Transformer/encoderblock_2/LayerNorm_0/scale" in msg  # and the list follows
    assert em.size_from_type("S/16").describe() == (
        "S/16 (hidden 384, 6 heads, mlp 1536, 12 layers, patch 16)"
    )


def test_wrong_model_class(vit, tmp_path):
    config, _ = vit
    np.savez(tmp_path / "augreg.npz", **augreg_arrays(config))
    clip_config = tiny_config("clip_vit_with_embedding")
    with pytest.raises(CheckpointError, match="load into --config.model_class=vit_with_embedding"):
        load_pretrained(
            zero_params(clip_config), str(tmp_path / "augreg.npz"), settings.model_spec(clip_config)
        )


def test_missing_and_unreadable_files(vit, tmp_path, monkeypatch):
    config, params = vit
    with pytest.raises(FileNotFoundError, match="nope.npz does not exist"):
        load_pretrained(params, str(tmp_path / "nope.npz"), settings.model_spec(config))
    with pytest.raises(FileNotFoundError, match="pretrained_ckpt"):
        load_pretrained(params, "", settings.model_spec(config))
    (tmp_path / "junk.bin").write_bytes(b"hello world, not weights")
    with pytest.raises(CheckpointError, match="Cannot tell the format of checkpoint"):
        load_pretrained(params, str(tmp_path / "junk.bin"), settings.model_spec(config))
    np.savez(tmp_path / "other.npz", **{"resnet/conv/kernel": np.ones(3, np.float32)})
    with pytest.raises(CheckpointError, match=r"unknown tensor names \(e.g. resnet/conv/kernel\)"):
        load_pretrained(params, str(tmp_path / "other.npz"), settings.model_spec(config))
    (tmp_path / "model.pt").write_bytes(b"\x80\x02}q\x00.")  # a legacy (non-zip) torch pickle
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    with pytest.raises(CheckpointError, match="model.pt is a legacy .non-zip. torch.save file"):
        load_pretrained(params, str(tmp_path / "model.pt"), settings.model_spec(config))


def test_bilinear_resize_hand_checked():
    grid = np.array([[0.0, 1.0], [2.0, 3.0]])[:, :, None]
    # Half-pixel centres: output pixel j of 4 samples input coordinate (j + 0.5) / 2 - 0.5,
    # clamped to [0, 1]: 0, 0.25, 0.75, 1. The input is 2*y + x, so the output is too.
    s = np.array([0.0, 0.25, 0.75, 1.0])
    np.testing.assert_allclose(resize_bilinear(grid, 4, 4)[:, :, 0], 2 * s[:, None] + s[None, :])
    big = np.arange(16.0).reshape(4, 4, 1)  # 4*y + x; 2 outputs sample coordinates 0.5 and 2.5
    np.testing.assert_allclose(resize_bilinear(big, 2, 2)[:, :, 0], [[2.5, 4.5], [10.5, 12.5]])
    pos = np.concatenate([[[-7.0]], grid.reshape(4, 1)])[None]  # [1, 1 + 2*2, 1]
    out = resize_position_embedding(pos, 17)
    assert out.shape == (1, 17, 1) and out[0, 0, 0] == -7.0
    np.testing.assert_allclose(out[0, 1:, 0], (2 * s[:, None] + s[None, :]).ravel())
    with pytest.raises(CheckpointError, match="square grid"):
        resize_position_embedding(pos, 11)  # 10 grid tokens: no square


def test_bfloat16_safetensors_read_as_float32(tmp_path):
    values = np.array([[1.5, -2.25], [0.1, 3.0]], np.float32)
    raw = values.astype(ml_dtypes.bfloat16).tobytes()
    header = json.dumps({"w": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, len(raw)]}})
    header = header.encode() + b" " * (-len(header) % 8)
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + raw)
    container, arrays = read_checkpoint(str(path))
    assert container == "safetensors" and arrays["w"].dtype == np.float32
    np.testing.assert_array_equal(arrays["w"], values.astype(ml_dtypes.bfloat16).astype(np.float32))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_pretrained_weights_refused_naming_the_tensor(tmp_path, bad):
    config = tiny_config()
    arrays = augreg_arrays(config)
    name = "Transformer/encoderblock_1/MlpBlock_3/Dense_0/kernel"
    arrays[name][3, 5] = bad
    np.savez(tmp_path / "ckpt.npz", **arrays)
    with pytest.raises(CheckpointError, match=f"{name}.*non-finite") as e:
        load_pretrained(
            zero_params(config), str(tmp_path / "ckpt.npz"), settings.model_spec(config)
        )
    assert "\n" not in str(e.value)


def test_non_finite_in_skipped_tensor_is_harmless(tmp_path):
    config = tiny_config()
    arrays = augreg_arrays(config)
    arrays["head/kernel"][0, 0] = np.nan  # the i21k head is not loaded
    np.savez(tmp_path / "ckpt.npz", **arrays)
    loaded = load_pretrained(
        zero_params(config), str(tmp_path / "ckpt.npz"), settings.model_spec(config)
    )
    np.testing.assert_array_equal(loaded["backbone"]["cls"], arrays["cls"])
