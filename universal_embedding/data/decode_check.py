"""The converter's test decode, a batch of images per TensorFlow call.

Every stored image must decode in TensorFlow (image_files.tf_compatible_bytes). Testing one image
per eager call costs about ten times the decode of a small image; here a batch of JPEG/PNG bytes
is decoded in one compiled call, and only a batch that fails is tested image by image (which
also re-encodes what Pillow can read as PNG and names what neither can).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import tensorflow as tf

from universal_embedding.data import image_files

BATCH = 256


@tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
def _decode_all(raws: tf.Tensor) -> tf.Tensor:
    return tf.map_fn(
        lambda raw: tf.shape(tf.io.decode_image(raw, channels=3, expand_animations=False)),
        raws,
        fn_output_signature=tf.TensorSpec([3], tf.int32),
        parallel_iterations=16,
    )


def _all_decode(raws: list[bytes]) -> bool:
    if not raws:
        return True
    try:
        _decode_all(tf.constant(raws))
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
        return False
    return True


def compatible_batch(raws: list[bytes]) -> list[tuple[bytes | None, str]]:
    """(tf_compatible_bytes of each, '') or (None, why it is bad), in order."""
    kept = [i for i, raw in enumerate(raws) if raw.startswith(image_files.KEEP_MAGIC)]
    good = set(kept) if _all_decode([raws[i] for i in kept]) else set()
    out: list[tuple[bytes | None, str]] = []
    for i, raw in enumerate(raws):
        if i in good:
            out.append((raw, ""))
            continue
        try:
            out.append((image_files.tf_compatible_bytes(raw), ""))
        except image_files.BadImageError as e:
            out.append((None, str(e)))
    return out


def checked(loaded: Iterable[tuple[bytes | None, str]]) -> Iterator[tuple[bytes | None, str]]:
    """The (bytes, reason) pairs of `loaded`, in order, each image's bytes test-decoded
    (image_files.load_image_bytes(..., test_decode=False) gives such pairs)."""
    batch: list[tuple[bytes | None, str]] = []
    for item in loaded:
        batch.append(item)
        if len(batch) == BATCH:
            yield from _check(batch)
            batch = []
    yield from _check(batch)


def _check(batch: list[tuple[bytes | None, str]]) -> list[tuple[bytes | None, str]]:
    present = [i for i, (data, _) in enumerate(batch) if data is not None]
    done = compatible_batch([batch[i][0] for i in present])
    out = list(batch)
    for i, pair in zip(present, done, strict=True):
        out[i] = pair
    return out
