"""Single images (files, bytes, PIL images, uint8 arrays) through the evaluation transform.

The same TensorFlow decode, resize, crop and normalisation as `input_pipeline.folder_batches`
and the TFRecord evaluation, so descriptors match `knn_main` / `extract_dir_descriptors`.
`serving_images` is the graph version used inside the exported SavedModel.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Iterator

import numpy as np
import tensorflow as tf

from universal_embedding.data import image_files, preprocess

image_files.hide_gpus_from_tensorflow()  # JAX owns the accelerators


def as_rgb_array(image) -> np.ndarray:
    """PIL image or uint8 array ([H, W], [H, W, 1|3|4]) -> uint8 [H, W, 3] (gray copied, alpha
    dropped), the conversion TensorFlow's 3-channel decode applies to files."""
    if hasattr(image, "convert") and hasattr(image, "mode"):  # PIL image
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"Image arrays must be uint8 (0..255), got {arr.dtype}.")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4) or min(arr.shape[:2]) < 1:
        raise ValueError(f"Image arrays must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4]; got "
                         f"shape {arr.shape}.")  # fmt: skip
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr[:, :, :3])


def read_file_bytes(path: str, max_bytes: int = image_files.DEFAULT_MAX_IMAGE_BYTES) -> bytes:
    """A file's bytes as the folder pipeline reads them (size and header checked first; non
    JPEG/PNG re-encoded as PNG)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Image file {path} does not exist.")
    try:
        return image_files.fast_compatible_bytes(image_files.read_image_file(path, max_bytes))
    except image_files.BadImageError as e:
        raise ValueError(f"{path}: {e}") from e


@functools.lru_cache(maxsize=8)
def _transforms(image_size: int, norm: str):
    def from_pixels(pixels):
        return preprocess.eval_transform(pixels, image_size=image_size, norm=norm)

    def from_bytes(raw):
        return from_pixels(preprocess.decode(raw))

    pixels_fn = tf.function(from_pixels, input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
    bytes_fn = tf.function(from_bytes, input_signature=[tf.TensorSpec([], tf.string)])
    return pixels_fn, bytes_fn


def eval_image(item, *, image_size: int, normalization: str) -> np.ndarray:
    """One image (path, encoded bytes, PIL image or uint8 array) -> float32 [S, S, 3]."""
    pixels_fn, bytes_fn = _transforms(image_size, normalization)
    if isinstance(item, (str, os.PathLike)):
        item = read_file_bytes(os.fspath(item))
    try:  # bytes and arrays get the checks files get: size, header, pixel count
        if isinstance(item, bytes):
            raw = image_files.fast_compatible_bytes(image_files.check_image_bytes(item))
            return bytes_fn(tf.constant(raw)).numpy()
        if hasattr(item, "size") and hasattr(item, "mode"):  # PIL image: size is (w, h)
            image_files.check_pixel_count(item.size[1], item.size[0])
        elif np.ndim(item) >= 2:
            image_files.check_pixel_count(*np.shape(item)[:2])
    except image_files.BadImageError as e:
        raise ValueError(f"Image {type(item).__name__}: {e}") from None
    return pixels_fn(tf.constant(as_rgb_array(item))).numpy()


def eval_batches(
    items: Iterable, *, batch_size: int, image_size: int, normalization: str
) -> Iterator[np.ndarray]:
    """float32 [<= batch_size, S, S, 3] batches of eval-transformed images, in order."""
    batch: list[np.ndarray] = []
    for item in items:
        batch.append(eval_image(item, image_size=image_size, normalization=normalization))
        if len(batch) == batch_size:
            yield np.stack(batch)
            batch = []
    if batch:
        yield np.stack(batch)


def serving_images(image_bytes: tf.Tensor, *, image_size: int, normalization: str) -> tf.Tensor:
    """Graph: encoded images tf.string [N] -> eval-transformed float32 [N, S, S, 3]."""

    def one(raw: tf.Tensor) -> tf.Tensor:
        image = preprocess.decode(raw)
        return preprocess.eval_transform(image, image_size=image_size, norm=normalization)

    spec = tf.TensorSpec([image_size, image_size, 3], tf.float32)
    return tf.map_fn(one, image_bytes, fn_output_signature=spec)
