"""Shared extraction driver: build the model, load its weights, embed splits on every device.

Used by knn_main and extract_dir_descriptors. Weights come from a training workdir
(`train_dir`: its config.json defines the model, its best / latest / chosen checkpoint the
params) or from a pretrained file (`pretrained_ckpt`). Missing weights fail loudly; a random
model needs an explicit `allow_random_init=True`. Batches are supplied by the caller (the
TensorFlow input pipeline lives in data/), so this module imports no TensorFlow.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import jax
import ml_collections
import numpy as np
from absl import logging
from tqdm import tqdm

from universal_embedding.knn import descriptors as knn_descriptors

# Fields of a training config that define the model (and so how its images are prepared).
MODEL_FIELDS = ("model_class", "model_type", "image_size", "normalization")
# model.* fields that are compute settings of this run, not part of the trained model.
COMPUTE_FIELDS = ("dtype", "attention")

EmbedFn = Callable[[np.ndarray], np.ndarray]


def resolve_model_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of `config` whose model definition is read from `train_dir`/config.json (if set)."""
    c = config.copy_and_resolve_references()
    train_dir = config.get("train_dir", "")
    if not train_dir:
        return c
    path = os.path.join(train_dir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: --config.train_dir must be a training workdir written by "
            "`python -m universal_embedding.main` (it holds config.json and checkpoints/). "
            "For off-the-shelf weights use --config.train_dir='' --config.pretrained_ckpt=PATH."
        )
    with open(path) as f:
        trained = json.load(f)
    with c.unlocked():  # command-line configs are locked; the trained model may add fields
        for field in MODEL_FIELDS:
            if field in trained:
                c[field] = trained[field]
        for field, value in trained.get("model", {}).items():
            if field not in COMPUTE_FIELDS:
                c.model[field] = value
    return c


def save_run_config(config: ml_collections.ConfigDict, workdir: str, name: str) -> str:
    """This run's config as W/<name> (not config.json: W may be the training workdir itself)."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        json.dump(config.to_dict(), f, indent=2, sort_keys=True)
    return path


def check_weights_source(config: ml_collections.ConfigDict) -> str:
    """'train_dir', 'pretrained' or 'random'; raises when no weights were named on purpose."""
    if config.get("train_dir", ""):
        if not os.path.isdir(config.train_dir):
            raise FileNotFoundError(
                f"train_dir {config.train_dir} does not exist: give a training workdir "
                "(it holds config.json and checkpoints/)."
            )
        return "train_dir"
    if config.get("pretrained_ckpt", ""):
        if not os.path.isfile(config.pretrained_ckpt):
            raise FileNotFoundError(
                f"pretrained_ckpt {config.pretrained_ckpt} does not exist. Give an existing "
                "weight file (.npz / .npy / .pt / .bin / .safetensors) or a --config.train_dir."
            )
        return "pretrained"
    if config.get("allow_random_init", False):
        return "random"
    raise ValueError(
        "No weights given: set --config.train_dir=<training workdir> or "
        "--config.pretrained_ckpt=<weight file>. To evaluate a random model on purpose "
        "(a baseline), set --config.allow_random_init=True."
    )


def _restore_trained_params(train_dir: str, checkpoint: str | int) -> dict:
    """Params of the best / latest / step-N checkpoint of a training workdir (numpy arrays)."""
    from universal_embedding.train import checkpoint as ckpt

    which = str(checkpoint).strip()
    if which == "best":
        params, info = ckpt.restore_best_params(train_dir)
        logging.info("Best checkpoint: step %s, metric %s", info.get("step"), info.get("metric"))
        return params
    if which == "latest" or which.isdigit():
        path = ckpt.checkpoint_dir(train_dir, ckpt.LATEST)
        return _restore_state_params(path, int(which) if which.isdigit() else None)
    raise ValueError(f"checkpoint must be 'best', 'latest' or a step number, got '{which}'.")


def _restore_state_params(path: str, step: int | None) -> dict:
    """The 'params' of a saved train state (latest series), without a template."""
    import orbax.checkpoint as ocp

    if not os.path.isdir(path):
        raise FileNotFoundError(f"No checkpoints at {path}: train first or pick another train_dir.")
    options = ocp.CheckpointManagerOptions(read_only=True)
    manager = ocp.CheckpointManager(path, options=options, item_names=("state", "extra"))
    try:
        steps = sorted(manager.all_steps())
        step = (steps[-1] if steps else None) if step is None else step
        if step is None or step not in steps:
            raise FileNotFoundError(
                f"No complete checkpoint of step {step} under {path} (available: {steps})."
            )
        meta = manager.item_metadata(step)["state"]
        tree = getattr(meta, "tree", meta)
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        args = ocp.args.Composite(state=ocp.args.PyTreeRestore(restore_args=restore_args))
        state = manager.restore(step, args=args)["state"]
    finally:
        manager.close()
    logging.info("Restored step %d from %s", step, path)
    return dict(state["params"])


def load_model(config: ml_collections.ConfigDict) -> tuple[object, dict, ml_collections.ConfigDict]:
    """(model without heads, params, resolved config) for the weights the config names."""
    from universal_embedding.models import embedding_model

    source = check_weights_source(config)
    mconfig = resolve_model_config(config)
    model = embedding_model.build_model(mconfig, None)
    if source == "train_dir":
        params = _restore_trained_params(config.train_dir, config.get("checkpoint", "best"))
        params = {k: v for k, v in params.items() if k != "heads"}
        logging.info("Weights: %s checkpoint of %s", config.checkpoint, config.train_dir)
    else:
        params = embedding_model.init_params(
            model, jax.random.PRNGKey(config.rng_seed), mconfig.image_size
        )
        params = {k: v for k, v in params.items() if k != "heads"}
        if source == "random":
            logging.warning("No weights given: evaluating a RANDOMLY initialised model.")
        if source == "pretrained":
            from universal_embedding.pretrained import load_pretrained

            params = load_pretrained(params, config.pretrained_ckpt, mconfig)
            logging.info("Weights: %s", config.pretrained_ckpt)
            if mconfig.embedd_to_eval == "projected" and mconfig.model.output_dim > 0:
                logging.warning(
                    "Pretrained weights have no trained projection: 'projected' is a random "
                    "%d-d projection. Use --config.embedd_to_eval=backbone_out for the "
                    "off-the-shelf backbone.",
                    mconfig.model.output_dim,
                )
    return model, params, mconfig


def global_batch_size(batch_size: int) -> int:
    """`batch_size` rounded up to a multiple of the device count (the batch is sharded)."""
    n = jax.device_count()
    return -(-batch_size // n) * n


@functools.lru_cache(maxsize=4)
def _jitted_embed(model, embedd_to_eval: str):
    """One jit function per (model definition, output): repeated runs reuse its compilation."""
    from universal_embedding.train import steps

    return steps.make_embed_fn(model, embedd_to_eval)


def make_embedder(model, params: dict, embedd_to_eval: str) -> EmbedFn:
    """A jit-compiled, data-sharded embed_fn(local images) -> global [B, d] float32 numpy."""
    from universal_embedding.train import steps

    mesh = steps.make_mesh()
    embed = _jitted_embed(model, embedd_to_eval)
    params = jax.device_put(jax.device_get(params), steps.replicated(mesh))
    return steps.host_embed_fn(embed, params, mesh)


def _global_masks(batches: Iterable[dict]) -> Iterator[dict]:
    """With several processes, give each local batch the mask of the whole global batch."""
    if jax.process_count() == 1:
        yield from batches
        return
    from jax.experimental import multihost_utils

    for b in batches:
        mask = multihost_utils.process_allgather(np.asarray(b["mask"]), tiled=True)
        yield {**b, "mask": np.asarray(mask)}


def extract_splits(
    embed_fn: EmbedFn,
    keys: Sequence[str],
    batches_for: Callable[[str, str], Iterable[dict]],
    num_examples: Mapping[str, int],
) -> dict[str, np.ndarray]:
    """Descriptors of every 'domain/split' key, each split extracted once, rows in info order."""
    out: dict[str, np.ndarray] = {}
    for key in tqdm(list(dict.fromkeys(keys)), desc="splits", unit="split"):
        domain, split = key.split("/", 1)
        logging.info("Extracting %s (%d images)", key, num_examples[key])
        batches = _global_masks(batches_for(domain, split))
        out[key] = knn_descriptors.extract(embed_fn, batches, num_examples[key])
    return out
