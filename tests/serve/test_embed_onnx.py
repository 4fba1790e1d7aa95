"""embed_onnx.py, the standalone serving module: TensorFlow's evaluation pixels without
TensorFlow (decode, resize, crop compared with data/preprocess.py), checks on untrusted files,
and embedding through onnxruntime with a hand-made ONNX graph (the channel means)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from universal_embedding.data import image_files, preprocess
from universal_embedding.serve import embed_onnx

RNG = np.random.default_rng(0)


def _photo(h: int, w: int) -> np.ndarray:
    """Smooth colours plus noise: JPEG's IDCT and upsampling both matter on it."""
    y, x = np.mgrid[0:h, 0:w]
    base = 127 + 80 * np.sin(x[..., None] * [0.05, 0.07, 0.03] + y[..., None] * [0.04, 0.02, 0.09])
    return np.clip(base + RNG.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def _tf_pixels(raw: bytes) -> np.ndarray:
    """What the framework decodes: TensorFlow, after re-encoding formats it does not keep."""
    return preprocess.decode(tf.constant(image_files.fast_compatible_bytes(raw))).numpy()


PHOTO = Image.fromarray(_photo(61, 90))
GRAY16 = Image.fromarray(RNG.integers(0, 65536, (9, 7), dtype=np.uint16))
CMYK = Image.fromarray(RNG.integers(0, 256, (40, 30, 4), dtype=np.uint8), "CMYK")
ENCODED = {
    "jpeg 4:4:4": _encode(PHOTO, "JPEG", quality=85, subsampling=0),
    "jpeg 4:2:2": _encode(PHOTO, "JPEG", quality=85, subsampling=1),
    "jpeg 4:2:0 progressive": _encode(PHOTO, "JPEG", quality=75, progressive=True),
    "jpeg gray": _encode(PHOTO.convert("L"), "JPEG", quality=90),
    "jpeg cmyk": _encode(CMYK, "JPEG", quality=95),
    "png rgb": _encode(PHOTO, "PNG"),
    "png rgba": _encode(PHOTO.convert("RGBA"), "PNG"),
    "png gray+alpha": _encode(PHOTO.convert("LA"), "PNG"),
    "png palette": _encode(PHOTO.convert("P"), "PNG", transparency=3),
    "png 1-bit": _encode(PHOTO.convert("1"), "PNG"),
    "png 16-bit gray": _encode(GRAY16, "PNG"),
    "png 16-bit rgb": tf.io.encode_png(RNG.integers(0, 65536, (9, 7, 3)).astype(np.uint16)).numpy(),
    "gif": _encode(PHOTO, "GIF"),
    "bmp": _encode(PHOTO, "BMP"),
    "webp": _encode(PHOTO, "WEBP", quality=80),
}  # fmt: skip


@pytest.mark.parametrize("name", list(ENCODED))
def test_decode_gives_the_frameworks_pixels(name):
    np.testing.assert_array_equal(embed_onnx.decode(ENCODED[name]), _tf_pixels(ENCODED[name]))


def test_pillows_accurate_idct_would_not():
    """Why simplejpeg: Pillow's default JPEG decode is off TensorFlow's by a few grey levels."""
    raw = ENCODED["jpeg 4:2:0 progressive"]
    diff = np.abs(np.asarray(Image.open(io.BytesIO(raw)).convert("RGB"), int) - _tf_pixels(raw))
    assert 1 <= diff.max() <= 8 and diff.mean() > 0.3


@pytest.mark.parametrize(
    ("h", "w", "size", "expected"),
    [(300, 451, 224, (224, 336)), (451, 300, 224, (336, 224)), (5, 5, 16, (16, 16)),
     (64, 96, 16, (16, 24)), (3, 2000, 16, (16, 10666))],
)  # fmt: skip
def test_eval_size_truncates_the_long_side(h, w, size, expected):
    assert embed_onnx.eval_size(h, w, size) == expected


@pytest.mark.parametrize(
    ("h", "w", "size"),
    [(301, 451, 224), (451, 300, 224), (61, 90, 16), (7, 9, 16), (16, 16, 16), (3, 200, 16),
     (1000, 333, 32), (33, 32, 32)],
)  # fmt: skip
def test_eval_pixels_equal_tensorflows_resize_and_crop(h, w, size):
    image = RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)
    expected = preprocess.eval_transform(tf.constant(image), image_size=size, norm="").numpy()
    got = embed_onnx.eval_pixels(image, size)
    assert got.dtype == np.float32 and got.shape == (size, size, 3)
    np.testing.assert_array_equal(got, expected)


def test_untrusted_files_fail_in_one_line_naming_them(tmp_path, monkeypatch):
    big = tmp_path / "big.png"
    big.write_bytes(ENCODED["png rgb"])
    with pytest.raises(ValueError, match="big.png.*over the limit of 100"):
        embed_onnx.read_image_bytes(str(big), max_bytes=100)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 61 * 90 - 1)
    for name in ("jpeg 4:4:4", "png rgb"):
        with pytest.raises(ValueError, match="90x61 pixels, over Pillow's MAX_IMAGE_PIXELS"):
            embed_onnx.decode(ENCODED[name])
    with pytest.raises(ValueError, match="undecodable image"):
        embed_onnx.decode(b"\xff\xd8\xff not a jpeg")


def test_embed_runs_the_model_on_eval_pixels_in_order(tmp_path, capsys, channel_means_model):
    model = channel_means_model(tmp_path / "model.onnx", 16)
    files = []
    for i, name in enumerate(["jpeg 4:2:2", "png rgba", "gif", "jpeg gray", "png palette"]):
        files.append(str(tmp_path / f"{i}.img"))
        with open(files[-1], "wb") as f:
            f.write(ENCODED[name])
    expected = [embed_onnx.eval_pixels(_tf_pixels(open(f, "rb").read()), 16).mean((0, 1))
                for f in files]  # fmt: skip
    got = embed_onnx.embed(files, batch_size=2, model=model, device="cpu")
    assert got.dtype == np.float32 and got.shape == (5, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert embed_onnx.embed([], model=model).shape == (0, 3)
    out = str(tmp_path / "v.npy")
    assert embed_onnx.main([*files[:2], "--out", out, "--model", model]) == 0
    np.testing.assert_allclose(np.load(out), expected[:2], rtol=1e-6)
    assert out in capsys.readouterr().out
    assert embed_onnx.main([str(tmp_path / "missing.jpg"), "--out", out, "--model", model]) == 1
    assert "missing.jpg" in capsys.readouterr().err


def test_devices():
    assert embed_onnx.providers_for("cpu") == ["CPUExecutionProvider"]
    assert embed_onnx.providers_for(None)[-1] == "CPUExecutionProvider"
    with pytest.raises(ValueError, match="Unknown device 'tpu'"):
        embed_onnx.providers_for("tpu")
