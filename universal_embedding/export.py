"""Export a trained model for serving and sharing.

    python -m universal_embedding.export --workdir=W [--checkpoint=best] --out=DIR

writes DIR/saved_model/ (TensorFlow SavedModel: `serving_default` takes `image_bytes`, encoded
images tf.string [N], returns `embeddings` float32 [N, d], preprocessing included) and
DIR/params.safetensors + DIR/config.json (`Embedder.from_pretrained(DIR/params.safetensors)`).
"""

from __future__ import annotations

import os

from universal_embedding.api import Embedder


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


def _define_flags():
    from absl import flags

    flags.DEFINE_string("workdir", None, "Training workdir (config.json + checkpoints/).")
    flags.DEFINE_string("checkpoint", "best", "'best', 'latest' or a step number.")
    flags.DEFINE_string("embedd_to_eval", None, "projected | backbone_out (default: as trained).")
    flags.DEFINE_string("out", None, "Output folder.")
    flags.mark_flags_as_required(["workdir", "out"])
    return flags.FLAGS


def cli() -> None:
    """The `ue-export` command."""
    from universal_embedding.errors import command

    flags = _define_flags()

    def main(argv):
        embedder = Embedder.from_workdir(flags.workdir, flags.checkpoint, flags.embedd_to_eval)
        paths = export(embedder, flags.out)
        print(f"SavedModel: {paths['saved_model']}\nParams: {paths['params']}")

    command.run(main, quiet=True)


if __name__ == "__main__":
    cli()
