"""Export a trained model for serving and sharing.

    python -m universal_embedding.export --workdir=W [--checkpoint=best] --out=DIR [--format=F]

--format=saved_model (default) writes DIR/saved_model/ (TensorFlow SavedModel: `serving_default`
takes `image_bytes`, encoded images tf.string [N], returns `embeddings` float32 [N, d],
preprocessing included) and DIR/params.safetensors + DIR/config.json
(`Embedder.from_pretrained(DIR/params.safetensors)`).

--format=onnx writes DIR/model.onnx (jax2onnx: `pixels` float32 [N, S, S, 3] in 0..255 ->
`embeddings` float32 [N, d], normalisation inside) and DIR/embed_onnx.py, a standalone module
(numpy, Pillow, onnxruntime, simplejpeg) with the evaluation decode, resize and crop and
`embed(paths, batch_size=...)` (docs/using-a-model.md#onnx).
"""

from __future__ import annotations

import os

from universal_embedding.api import Embedder

FORMATS = ("saved_model", "onnx")
ONNX_CHECK_TOL = 1e-4  # max |onnxruntime - JAX| on random pixels, checked after converting


def export(embedder: Embedder, out_dir: str) -> dict[str, str]:
    """Write the SavedModel and the safetensors + config.json; returns their paths."""
    from universal_embedding.data import serving

    embed_fn, params = embedder.jax_function()
    saved = serving.save_serving_model(
        embed_fn,
        params,
        os.path.join(out_dir, "saved_model"),
        image_size=embedder.image_size,
        normalization=embedder.normalization,
    )
    return {"saved_model": saved, "params": embedder.save(out_dir)}


def pixels_function(embedder: Embedder):
    """fn(pixels [B, S, S, 3] in 0..255) -> [B, d]: normalisation, then the model."""
    from universal_embedding.data import normalization
    from universal_embedding.models import pixels

    embed_fn, params = embedder.jax_function()
    mean, std = normalization.mean_std(embedder.normalization)
    return lambda images: embed_fn(params, pixels.normalize_pixels(images, mean, std))


def export_onnx(embedder: Embedder, out_dir: str, verbose: bool = False) -> dict[str, str]:
    """Write DIR/model.onnx and DIR/embed_onnx.py; returns their paths.

    The converted model is run once by onnxruntime against JAX on random pixels (RuntimeError
    over ONNX_CHECK_TOL)."""
    from universal_embedding.serve import onnx_model

    fn = pixels_function(embedder)
    metadata = {
        "image_size": embedder.image_size,
        "normalization": embedder.normalization,
        "embedding": embedder.embedding,
        "dim": embedder.dim,
        "model_class": embedder.spec.model_class,
        "model_type": embedder.spec.model_type,
    }
    path = onnx_model.convert(
        fn,
        os.path.join(out_dir, "model.onnx"),
        image_size=embedder.image_size,
        metadata=metadata,
        verbose=verbose,
    )
    diff = onnx_model.max_difference(path, fn, embedder.image_size)
    if not diff <= ONNX_CHECK_TOL:
        raise RuntimeError(f"{path}: onnxruntime differs from JAX by {diff:.2e} (over "
                           f"{ONNX_CHECK_TOL}); the converter mistranslated an op.")  # fmt: skip
    return {"model": path, "embed_onnx": onnx_model.write_standalone(out_dir)}


def _define_flags():
    from absl import flags

    flags.DEFINE_string("workdir", None, "Training workdir (config.json + checkpoints/).")
    flags.DEFINE_string("checkpoint", "best", "'best', 'latest' or a step number.")
    flags.DEFINE_string("embedd_to_eval", None, "projected | backbone_out (default: as trained).")
    flags.DEFINE_string("out", None, "Output folder.")
    flags.DEFINE_enum(
        "format", "saved_model", FORMATS, "saved_model (TensorFlow) or onnx (onnxruntime)."
    )
    flags.mark_flags_as_required(["workdir", "out"])
    return flags.FLAGS


def cli() -> None:
    """The `ue-export` command."""
    from universal_embedding.errors import command, verbose_requested

    flags = _define_flags()

    def main(argv):
        if os.path.exists(flags.out) and not os.path.isdir(flags.out):
            raise FileExistsError(f"--out={flags.out} is a file; give a folder (new or existing).")
        embedder = Embedder.from_workdir(flags.workdir, flags.checkpoint, flags.embedd_to_eval)
        if flags.format == "onnx":
            paths = export_onnx(embedder, flags.out, verbose=verbose_requested())
            print(f"ONNX model: {paths['model']}\nStandalone embed: {paths['embed_onnx']}")
            return
        paths = export(embedder, flags.out)
        print(f"SavedModel: {paths['saved_model']}\nParams: {paths['params']}")

    command.run(main, quiet=True)


if __name__ == "__main__":
    cli()
