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

from universal_embedding.data import registry
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


def is_shuffled(key: str) -> bool:
    """Whether 'domain/split' is stored shuffled (train splits), so needs ordering by record key."""
    return key.split("/", 1)[1] in registry.TRAIN_SPLITS


def _lookup(index: Mapping[str, int], key: str) -> int:
    """Path id of a record key (-2: absent); rp2k keys may hold `#U`-escaped names."""
    if key in index or "#U" not in key:
        return index.get(key, -2)
    from universal_embedding.data.image_files import unescape_name

    return index.get(unescape_name(key), -2)


def _with_positions(
    batches: Iterable[dict], index: Mapping[str, int], key: str, unknown: list[str]
) -> Iterator[dict]:
    """Add 'positions' (int64 path id of each record; -1 padding, -2 unknown key), drop 'keys'."""
    for b in batches:
        if "keys" not in b:
            raise ValueError(f"{key}: batches carry no 'keys'; call eval_batches(with_keys=True).")
        mask = np.asarray(b["mask"], bool)
        pos = np.fromiter((_lookup(index, k) for k in b["keys"]), np.int64, len(mask))
        pos[~mask] = -1
        if len(unknown) < 3:
            unknown.extend(str(k) for k in b["keys"][pos == -2][: 3 - len(unknown)])
        yield {k: v for k, v in b.items() if k != "keys"} | {"positions": pos}


def _global_masks(batches: Iterable[dict]) -> Iterator[dict]:
    """With several processes: each local batch gets the global mask (and positions)."""
    if jax.process_count() == 1:
        yield from batches
        return
    from jax.experimental import multihost_utils

    for b in batches:
        local = {k: np.asarray(b[k]) for k in ("mask", "positions") if k in b}
        gathered = multihost_utils.process_allgather(local, tiled=True)
        yield {**b, **{k: np.asarray(v) for k, v in gathered.items()}}


def _record_positions(batches: Iterable[dict], sink: list[np.ndarray]) -> Iterator[dict]:
    """Pass batches through, keeping the positions of their real rows (extract's row order)."""
    for b in batches:
        sink.append(b["positions"][np.asarray(b["mask"], bool)])
        yield b


def path_index(paths: Sequence[str]) -> tuple[dict[str, int], np.ndarray]:
    """({path: its first info row}, int64 [n] first row of each row's path): ids for matching."""
    index: dict[str, int] = {}
    ids = np.fromiter((index.setdefault(p, i) for i, p in enumerate(paths)), np.int64, len(paths))
    return index, ids


def info_order(
    positions: np.ndarray, info_ids: np.ndarray, key: str, unknown: Sequence[str] = ()
) -> np.ndarray:
    """perm with rows[perm] in info-file order; positions[j] = path id of extracted row j.

    Ids come from path_index (negative: key not in the info file). A path listed k times
    must come k times (same file, same descriptor); anything else raises naming the split.
    """
    where = "Domain '{}', split '{}'".format(*key.split("/", 1))
    fix = "Re-convert the split from its info file (python -m universal_embedding.data.prepare)."
    if np.any(positions < 0):
        raise ValueError(
            f"{where}: {int(np.sum(positions < 0))} TFRecord key(s) are not paths of its info "
            f"file, e.g. {list(unknown)} (a record's 'key' must be its info-file path). {fix}"
        )
    n = len(info_ids)
    by_row, by_info = np.argsort(positions, kind="stable"), np.argsort(info_ids, kind="stable")
    if len(positions) != n or not np.array_equal(positions[by_row], info_ids[by_info]):
        have = np.bincount(positions, minlength=n)
        want = np.bincount(info_ids, minlength=n)
        raise ValueError(
            f"{where}: {len(positions)} records for {n} info-file rows; info rows with extra "
            f"records e.g. {np.flatnonzero(have > want)[:3].tolist()}, without a record e.g. "
            f"{np.flatnonzero(have < want)[:3].tolist()}. {fix}"
        )
    perm = np.empty(n, np.int64)
    perm[by_info] = by_row
    return perm


def _extract_by_key(
    embed_fn: EmbedFn, batches: Iterable[dict], paths: Sequence[str], key: str
) -> np.ndarray:
    """Descriptors of a split whose records are in any order, put in info-file order by key."""
    index, info_ids = path_index(paths)
    sink: list[np.ndarray] = []
    unknown: list[str] = []
    batches = _with_positions(batches, index, key, unknown)
    batches = _record_positions(_global_masks(batches), sink)
    rows = knn_descriptors.extract(embed_fn, batches, len(paths))
    positions = np.concatenate(sink) if sink else np.zeros(0, np.int64)
    return rows[info_order(positions, info_ids, key, unknown)]


def extract_splits(
    embed_fn: EmbedFn,
    keys: Sequence[str],
    batches_for: Callable[[str, str], Iterable[dict]],
    num_examples: Mapping[str, int],
    info_paths: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, np.ndarray]:
    """Descriptors of every 'domain/split' key, each split extracted once, rows in info order.

    Splits named in `info_paths` ({key: info-file paths}) may come in any record order: their
    batches must carry 'keys' (eval_batches(with_keys=True)) and their rows are put in
    info-file order by key. Other splits' batches must already be in info-file order.
    """
    info_paths = info_paths or {}
    out: dict[str, np.ndarray] = {}
    for key in tqdm(list(dict.fromkeys(keys)), desc="splits", unit="split"):
        domain, split = key.split("/", 1)
        logging.info("Extracting %s (%d images)", key, num_examples[key])
        batches = batches_for(domain, split)
        if key in info_paths:
            out[key] = _extract_by_key(embed_fn, batches, info_paths[key], key)
        else:
            out[key] = knn_descriptors.extract(embed_fn, _global_masks(batches), num_examples[key])
    return out
