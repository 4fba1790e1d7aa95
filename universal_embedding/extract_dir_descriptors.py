"""Descriptors for every image under a folder, with a trained or pretrained model.

python -m universal_embedding.extract_dir_descriptors \
    --config=universal_embedding/configs/config_extract_dir_descriptors.py \
    --workdir=W --config.base_dir=DIR --config.train_dir=T
Every readable image under DIR (recursive) -> W/descriptors.npz with 'descriptors' (n x d float32)
and 'paths' (relative to DIR, same row order); with --config.descriptor_format=original instead
the original code's W/descriptors.json, {"descriptors": [[...], ...], "paths": [DIR/..., ...]}
(JSON text; paths under DIR, as the original listed them). Unreadable files are listed (log and
W/unreadable.txt, JSON lines {"path", "reason"}) and skipped. Images get the evaluation
transform (the one knn_main and the `Embedder` apply).
"""

from __future__ import annotations

import os

import jax
import ml_collections
import numpy as np
from absl import logging

from universal_embedding import loading, runner, settings, writers
from universal_embedding.checkpoint.lock import WorkdirLock
from universal_embedding.distributed.mesh import global_batch_size
from universal_embedding.errors import command
from universal_embedding.knn import descriptors as knn_descriptors
from universal_embedding.original import descriptor_files


def save_dir_descriptors(
    workdir: str, descriptors: np.ndarray, paths: list[str], fmt: str, base_dir: str
) -> str:
    """W/descriptors.npz ('descriptors' float32 [n, d], 'paths' relative to base_dir) or, for
    fmt='original', the original's W/descriptors.json (paths joined to base_dir); its path."""
    if fmt == "original":
        full = [os.path.join(base_dir, p) for p in paths]
        return descriptor_files.save_dir_original(workdir, descriptors, full)
    path = os.path.join(workdir, "descriptors.npz")
    os.makedirs(workdir, exist_ok=True)
    np.savez(path, descriptors=np.asarray(descriptors, np.float32), paths=np.asarray(paths, str))
    return path


def run_extract_dir(
    config: ml_collections.ConfigDict, workdir: str
) -> tuple[np.ndarray, list[str]]:
    """Embed every readable image under config.base_dir; returns (descriptors, relative paths)."""
    from universal_embedding.data import image_files, input_pipeline

    base_dir = config.base_dir
    if not base_dir or not os.path.isdir(base_dir):
        raise FileNotFoundError(
            f"base_dir '{base_dir}' is not a folder: give --config.base_dir=<folder of images>."
        )
    fmt = knn_descriptors.descriptor_format(config.get("descriptor_format"))
    spec, source = settings.model_and_weights(config)  # before scanning the folder
    if jax.process_count() > 1:
        raise ValueError("extract_dir_descriptors runs as a single process (all local devices).")
    paths, unreadable = image_files.scan_folder(base_dir)
    for rel, reason in unreadable:
        logging.warning("Skipping unreadable image %r: %s", os.path.join(base_dir, rel), reason)
    if not paths:
        raise ValueError(f"No readable image under {base_dir} ({len(unreadable)} unreadable).")
    logging.info("%d images under %s (%d unreadable)", len(paths), base_dir, len(unreadable))

    loaded = loading.load_model(spec, source)
    embed_fn = loading.make_embedder(loaded.model, loaded.params, config.embedd_to_eval)
    batches = input_pipeline.folder_batches(
        base_dir,
        paths,
        batch_size=global_batch_size(config.eval_batch_size),
        image_size=loaded.spec.image_size,
        normalization=loaded.normalization,
        skipped=(skipped := []),
    )
    descriptors = knn_descriptors.extract(embed_fn, batches, len(paths), skipped)
    paths, unreadable = image_files.drop_skipped(paths, unreadable, skipped)
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        written = [os.path.join(workdir, "extract_config.json")]
        writers.write_config_json(config.to_dict(), written[0])
        written.append(save_dir_descriptors(workdir, descriptors, paths, fmt, base_dir))
        if unreadable:
            written.append(os.path.join(workdir, "unreadable.txt"))
            image_files.write_unreadable(written[-1], unreadable)
        print(f"{len(paths)} images under {base_dir} embedded ({len(unreadable)} unreadable).")
        command.print_written(written)
    return descriptors, paths


def main(config: ml_collections.ConfigDict, workdir: str) -> None:
    """run_extract_dir holding the workdir's lock (checkpoint/lock.py): a training or another
    command writing into the same workdir refuses to start, and this one refuses while one
    runs."""
    with WorkdirLock(workdir, enabled=jax.process_index() == 0):
        run_extract_dir(config, workdir)


def cli() -> None:
    """The `ue-extract-dir` command."""
    runner.run(main, defaults="config_extract_dir_descriptors")


if __name__ == "__main__":
    cli()
