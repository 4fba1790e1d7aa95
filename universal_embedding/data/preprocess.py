"""TensorFlow image transforms (docs/uned-benchmark.md §4): decode, geometry, normalise."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from universal_embedding.data import normalization, registry


def parse_record(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    """Parse one UnED tf.train.Example into image bytes, first label, all labels and key."""
    features = {
        registry.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
        registry.LABEL_KEY: tf.io.VarLenFeature(tf.int64),
        registry.PATH_KEY: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
    ex = tf.io.parse_single_example(serialized, features)
    labels = tf.sparse.to_dense(ex[registry.LABEL_KEY])
    return {"image_bytes": ex[registry.IMAGE_KEY], "label": labels[0], "key": ex[registry.PATH_KEY]}


def decode(image_bytes: tf.Tensor) -> tf.Tensor:
    """Decode any TF-readable image to uint8 [H, W, 3] (grayscale and CMYK become RGB).

    JPEGs decode as the original's `tf.io.decode_jpeg` does: TensorFlow's default DCT, libjpeg's
    fast integer IDCT (a few grey levels off Pillow's accurate one on photos)."""
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def normalize(image: tf.Tensor, name: str) -> tf.Tensor:
    """Pixels in [0, 255] -> (x / 255 - mean) / std with the statistics of `name`."""
    mean, std = normalization.mean_std(name)
    scale = np.array([1.0 / (255.0 * s) for s in std], np.float32)
    offset = np.array([m / s for m, s in zip(mean, std, strict=True)], np.float32)
    image = tf.cast(image, tf.float32)
    if image.shape.is_fully_defined():  # full-size constants: TF's [3]-vector broadcast is slow
        scale = np.broadcast_to(scale, image.shape).copy()
        offset = np.broadcast_to(offset, image.shape).copy()
    return image * scale - offset


def train_transform(
    image: tf.Tensor, seed: tf.Tensor, *, image_size: int, resize_size: int, norm: str
) -> tf.Tensor:
    """Resize to a resize_size square, random crop, random flip; randomness from `seed` [2].

    The reference of data/crops.py's train_crop (full decode); norm='' keeps pixels in 0..255.
    """
    if resize_size < image_size:
        raise ValueError(f"resize_size ({resize_size}) must be >= image_size ({image_size}).")
    image = tf.image.resize(image, [resize_size, resize_size], method="bilinear")
    u = tf.random.stateless_uniform([3], seed=seed)
    span = float(resize_size - image_size + 1)
    top = tf.minimum(tf.cast(u[0] * span, tf.int32), resize_size - image_size)
    left = tf.minimum(tf.cast(u[1] * span, tf.int32), resize_size - image_size)
    image = image[top : top + image_size, left : left + image_size]
    image.set_shape([image_size, image_size, 3])
    image = tf.cond(u[2] < 0.5, lambda: image[:, ::-1], lambda: image)
    return normalize(image, norm) if norm else tf.cast(image, tf.float32)


def eval_size(shape: tf.Tensor, image_size: int) -> tf.Tensor:
    """[h, w] -> int32 [new_h, new_w] as the original computes it: the shorter side (the height
    when h == w) becomes image_size, the longer int(long / short * image_size), in float64 and
    truncated (451 x 300 at 224 -> [336, 224], not the rounded 337)."""
    h, w = shape[0], shape[1]
    hf, wf = tf.cast(h, tf.float64), tf.cast(w, tf.float64)
    size = tf.constant(image_size, tf.int32)
    wide = h <= w
    new_h = tf.where(wide, size, tf.cast(hf / wf * image_size, tf.int32))
    new_w = tf.where(wide, tf.cast(wf / hf * image_size, tf.int32), size)
    return tf.stack([new_h, new_w])


# The full resize is materialised when it holds at most this many output crops' worth of pixels,
# or at most MIN_EXACT_RESIZE pixels (any usual aspect ratio: 4M pixels are 48 MB of floats).
MAX_EVAL_RESIZE = 4
MIN_EXACT_RESIZE = 1 << 22


def _resize_then_crop(image: tf.Tensor, new: tf.Tensor, image_size: int) -> tf.Tensor:
    image = tf.image.resize(image, new, method="bilinear")
    top = (new[0] - image_size) // 2
    left = (new[1] - image_size) // 2
    return image[top : top + image_size, left : left + image_size]


def _sampled_crop(image: tf.Tensor, new: tf.Tensor, image_size: int) -> tf.Tensor:
    """The centre crop of the resize to `new`, sampled at the positions that resize uses
    (crops.sample_crop) from only the source pixels it needs: never the whole resize."""
    from universal_embedding.data import crops

    hw = tf.shape(image)[:2]
    scale = tf.cast(hw, tf.float32) / tf.cast(new, tf.float32)
    start = (new - image_size) // 2
    return crops.sample_crop(image, start, scale, image_size)


def eval_transform(image: tf.Tensor, *, image_size: int, norm: str) -> tf.Tensor:
    """Resize (bilinear, no antialias) to eval_size, center crop image_size, normalise
    (norm='' keeps pixels in 0..255).

    When the resize would hold more than MAX_EVAL_RESIZE crops' pixels and more than
    MIN_EXACT_RESIZE pixels (a very long or tall image: a 1 x 600000 PNG resized to 16 x 9.6M
    floats), the crop is sampled from the source directly at the same positions instead (equal up
    to float rounding), so memory stays proportional to the output."""
    new = eval_size(tf.shape(image)[:2], image_size)
    pixels = tf.cast(new[0], tf.int64) * tf.cast(new[1], tf.int64)
    small = pixels <= max(MAX_EVAL_RESIZE * image_size * image_size, MIN_EXACT_RESIZE)
    image = tf.cond(
        small,
        lambda: _resize_then_crop(image, new, image_size),
        lambda: _sampled_crop(image, new, image_size),
    )
    image.set_shape([image_size, image_size, 3])
    return normalize(image, norm) if norm else tf.cast(image, tf.float32)
