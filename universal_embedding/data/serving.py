"""A TensorFlow SavedModel around a JAX embedding function (jax2tf, native serialisation).

`serving_default`: `image_bytes` tf.string [N] (JPEG / PNG / any format tf.io.decode_image
reads) -> `embeddings` float32 [N, d]; the evaluation preprocessing (embed_inputs.serving_images)
runs inside the graph, so serving needs TensorFlow only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import tensorflow as tf

from universal_embedding.data import embed_inputs, image_files

image_files.hide_gpus_from_tensorflow()

PLATFORMS = ("cpu", "cuda")  # lowered for both: the same SavedModel serves on CPU and GPU


def save_serving_model(
    embed_fn: Callable,
    params: Mapping,
    out_dir: str,
    *,
    image_size: int,
    normalization: str,
    platforms: Sequence[str] = PLATFORMS,
) -> str:
    """Write the SavedModel of `embed_fn(params, images [B, S, S, 3]) -> [B, d]` to out_dir."""
    from jax.experimental import jax2tf

    tf_fn = jax2tf.convert(
        embed_fn,
        polymorphic_shapes=[None, "(b, ...)"],
        native_serialization_platforms=tuple(platforms),
        with_gradient=False,
    )
    module = tf.Module()
    module.params = tf.nest.map_structure(lambda a: tf.Variable(a, trainable=False), params)

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")], autograph=False
    )
    def serve(image_bytes):
        images = embed_inputs.serving_images(
            image_bytes, image_size=image_size, normalization=normalization
        )
        return {"embeddings": tf.identity(tf_fn(module.params, images), name="embeddings")}

    module.serve = serve
    tf.saved_model.save(module, out_dir, signatures={"serving_default": serve})
    return out_dir
