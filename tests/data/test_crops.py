"""Crop-aware and reduced-size decode: ratio choice, geometry equal to decode + resize + crop,
closeness of reduced decode, shapes and dtypes."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from universal_embedding.data import crops, preprocess


@pytest.mark.parametrize(
    "h, w, min_side, expected",
    [
        (768, 1024, 256, 2),  # 768 // 2 = 384 >= 256, 768 // 4 = 192 < 256
        (1536, 2048, 256, 4),  # 1536 // 4 = 384, // 8 = 192
        (2048, 4096, 256, 8),
        (4096, 4096, 224, 8),  # never more than 8
        (511, 700, 256, 1),  # 511 // 2 = 255: one pixel short
        (512, 700, 256, 2),
        (1400, 300, 256, 1),  # the short side decides, whichever axis it is
        (72, 90, 36, 2),  # the demo: 72 // 2 = 36
        (71, 90, 36, 1),
        (20, 20, 36, 1),  # smaller than the target: full decode
    ],
)
def test_reduction_ratio_hand_computed(h, w, min_side, expected):
    assert int(crops.reduction_ratio(tf.constant(h), tf.constant(w), min_side)) == expected


def _encode(pixels: np.ndarray, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt, **kw)
    return out.getvalue()


def _smooth(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth colour fields with edges (no per-pixel noise): a low-detail large photo."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (h // 60 + 2, w // 60 + 2, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))


def _noisy(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


CASES = [  # (h, w, format): larger and smaller than the targets, odd sizes, PNG, 1-pixel rows
    (300, 401, "JPEG"), (77, 53, "JPEG"), (300, 257, "PNG"), (1, 9, "PNG"), (512, 512, "JPEG"),
    (40, 300, "JPEG"),
]  # fmt: skip


@pytest.mark.parametrize("h, w, fmt", CASES)
def test_full_resolution_crops_equal_decode_resize_crop(h, w, fmt):
    """reduce=False: the same pixels as full decode + tf.image.resize + slicing (+ flip)."""
    raw = tf.constant(_encode(_noisy(h, w), fmt, **({"quality": 90} if fmt == "JPEG" else {})))
    full = preprocess.decode(raw)
    for s in range(4):  # different crop offsets and flips
        seed = tf.constant([7, s], tf.int64)
        want = preprocess.train_transform(full, seed, image_size=24, resize_size=32, norm="")
        got = crops.train_crop(raw, seed, image_size=24, resize_size=32, reduce=False)
        assert got.shape == (24, 24, 3) and got.dtype == tf.float32
        np.testing.assert_allclose(got, want, atol=0.01)  # float rounding of positions only


def test_reduced_decode_is_close_on_a_large_jpeg_and_off_for_small_ones():
    raw = tf.constant(_encode(_smooth(800, 1100), "JPEG", quality=90))  # ratio 4 for resize 128
    full = preprocess.decode(raw)
    diffs = []
    for s in range(4):
        seed = tf.constant([1, s], tf.int64)
        want = preprocess.train_transform(full, seed, image_size=112, resize_size=128, norm="")
        got = crops.train_crop(raw, seed, image_size=112, resize_size=128, reduce=True)
        diffs.append(float(tf.reduce_mean(tf.abs(got - want))))
    # Reduced decode ran (pixels differ) and stays close: libjpeg's scaled IDCT is no exact box
    # filter (chroma most); on this image the mean difference is about 1.0 grey level.
    assert 0.05 < np.mean(diffs) < 2.0
    small = tf.constant(_encode(_smooth(200, 300), "JPEG", quality=90))  # 200 // 2 < 128: ratio 1
    seed = tf.constant([1, 0], tf.int64)
    want = preprocess.train_transform(preprocess.decode(small), seed, image_size=112,
                                      resize_size=128, norm="")  # fmt: skip
    got = crops.train_crop(small, seed, image_size=112, resize_size=128, reduce=True)
    np.testing.assert_allclose(got, want, atol=0.01)


def test_progressive_grayscale_and_cmyk_jpegs():
    gray = _smooth(300, 200)[..., 0]
    cmyk = Image.fromarray(_smooth(300, 200)).convert("CMYK")
    out = io.BytesIO()
    cmyk.save(out, format="JPEG")
    for raw in (
        _encode(gray, "JPEG"),
        _encode(_smooth(300, 200), "JPEG", progressive=True),
        out.getvalue(),
    ):
        t, seed = tf.constant(raw), tf.constant([0, 1], tf.int64)
        want = preprocess.train_transform(preprocess.decode(t), seed, image_size=16,
                                          resize_size=20, norm="")  # fmt: skip
        got = crops.train_crop(t, seed, image_size=16, resize_size=20, reduce=False)
        np.testing.assert_allclose(got, want, atol=0.01)


def test_to_uint8_rounds_and_saturates():
    x = tf.constant([-0.4, 0.49, 0.51, 254.5, 255.3])
    assert crops.to_uint8(x).numpy().tolist() == [0, 0, 1, 254, 255]  # round half to even
