"""One place that turns a config into a model plus its weights.

Weights come from a training workdir (`train_dir`: its config.json defines the model, its best /
latest / step-N checkpoint the params; a workdir of the original UnED code, with flax
`checkpoint_<step>` files, is read too: see original/workdir.py), a pretrained file
(`pretrained_ckpt`: backbone only) or a seeded random init (`allow_random_init=True` for
evaluation; the default start of training).
Training, `knn_main`, `extract_dir_descriptors`, the demo and the trainer's evaluators all call
this module; missing weights fail loudly.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping

import jax
import ml_collections
from absl import logging

from universal_embedding.checkpoint import restore_params
from universal_embedding.data.normalization import normalization_name
from universal_embedding.loading import exported
from universal_embedding.models import embedding_model, udon
from universal_embedding.original import checkpoint as original_ckpt
from universal_embedding.original import workdir as original_workdir

# Fields of a training config that define the model (and so how its images are prepared).
MODEL_FIELDS = ("model_class", "model_type", "image_size", "normalization")
# model.* fields that are compute settings of this run, not part of the trained model.
COMPUTE_FIELDS = ("dtype", "attention")
SOURCES = ("train_dir", "pretrained", "random")


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A model without heads, its params, and the resolved config that defines it."""

    model: embedding_model.EmbeddingModel | udon.UdonModel
    params: dict
    config: ml_collections.ConfigDict  # model fields as trained (train_dir) or as given
    normalization: str  # 'clip' | 'imagenet': how its images must be normalised


def resolve_model_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of `config` whose model definition is read from `train_dir`/config.json (if set)."""
    c = config.copy_and_resolve_references()
    if not config.train_dir:
        return c
    if original_ckpt.is_original_workdir(config.train_dir):
        with c.unlocked():
            return original_workdir.resolve(c, config.train_dir)
    path = os.path.join(config.train_dir, "config.json")
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
        if udon.is_udon(trained.get("model_class", "")):  # teachers are numbered by these
            c.dataset_name = trained["dataset_name"]
        for field, value in saved_model_fields(trained, path).items():
            if field not in COMPUTE_FIELDS:
                c.model[field] = value
    return c


def saved_model_fields(trained: Mapping, path: str) -> dict:
    """model.* of a training config.json; one this project wrote before a model field existed
    (it always holds model.dtype) gets the value its code ran with (exported.LEGACY_MODEL_FIELDS):
    a workdir trained before config.model.gelu_approximate keeps its exact (erf) GELU."""
    fields = dict(trained.get("model", {}))
    if "dtype" not in fields:  # not written by this project's trainer: take it as it is
        return fields
    fields, filled = exported.with_legacy_fields(fields)
    for name in filled:
        message = "%s has no model.%s: using %r, as the code that wrote it did."
        logging.info(message, path, name, fields[name])
    return fields


def check_same_numerics(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Resuming `workdir` must keep the model numerics it was trained with (its config.json)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        return
    with open(path) as f:
        trained = saved_model_fields(json.load(f), path)
    family = udon.backbone_family(config.model_class)
    name = "gelu_approximate"
    now = config.model.get(name, True)
    if family == "vit_with_embedding" and name in trained and trained[name] != now:
        raise ValueError(
            f"{workdir} was trained with config.model.{name}={trained[name]} and is resumed with "
            f"{now}: add --config.model.{name}={trained[name]} (or use a new workdir)."
        )


def weights_source(config: ml_collections.ConfigDict) -> str:
    """'train_dir', 'pretrained' or 'random'; raises when no weights were named on purpose."""
    if config.train_dir:
        if original_ckpt.is_checkpoint_file(config.train_dir):
            raise FileNotFoundError(
                f"train_dir {config.train_dir} is a checkpoint file: give the workdir holding it "
                f"(--config.train_dir={os.path.dirname(os.path.abspath(config.train_dir))}) and "
                "pick the step with --config.checkpoint=best|latest|<step>."
            )
        if not os.path.isdir(config.train_dir):
            raise FileNotFoundError(
                f"train_dir {config.train_dir} does not exist: give a training workdir "
                "(it holds config.json and checkpoints/)."
            )
        return "train_dir"
    if config.pretrained_ckpt:
        if not os.path.isfile(config.pretrained_ckpt):
            raise FileNotFoundError(
                f"pretrained_ckpt {config.pretrained_ckpt} does not exist. Give an existing "
                "weight file (.npz / .npy / .pt / .bin / .safetensors) or a --config.train_dir."
            )
        return "pretrained"
    if config.allow_random_init:
        return "random"
    raise ValueError(
        "No weights given: set --config.train_dir=<training workdir> or "
        "--config.pretrained_ckpt=<weight file>. To evaluate a random model on purpose "
        "(a baseline), set --config.allow_random_init=True."
    )


def initial_params(config: ml_collections.ConfigDict, model) -> dict:
    """Seeded random init of every part of `model`; then every tensor from config.init_ckpt
    (a trained model: backbone, projection, heads) or else the backbone from
    config.pretrained_ckpt, if set."""
    params = embedding_model.init_params(
        model, jax.random.PRNGKey(config.rng_seed), config.image_size
    )
    if config.get("init_ckpt"):
        if not os.path.exists(config.init_ckpt):
            raise FileNotFoundError(
                f"init_ckpt {config.init_ckpt} does not exist: give a checkpoint_<step> file or "
                "a training workdir (of this project or of the original code)."
            )
        return original_workdir.init_params(params, config.init_ckpt, config.model_class)
    if config.pretrained_ckpt:
        from universal_embedding.pretrained import load_pretrained

        params = load_pretrained(params, config.pretrained_ckpt, config)
    return params


def without_heads(params: Mapping) -> dict:
    """Params of the embedding alone (backbone + projection): what extraction needs."""
    return {k: v for k, v in params.items() if k != "heads"}


def load_model(config: ml_collections.ConfigDict) -> LoadedModel:
    """The model without heads plus the weights the config names (workdir, file or random)."""
    source = weights_source(config)
    mconfig = resolve_model_config(config)
    model = embedding_model.build_model(mconfig, None)
    if source == "train_dir" and original_ckpt.is_original_workdir(config.train_dir):
        params, info = original_workdir.load_params(
            config.train_dir, config.checkpoint, model, mconfig
        )
        logging.info("Weights: %s (original UnED checkpoint)", info["path"])
    elif source == "train_dir":
        params, info = restore_params(config.train_dir, config.checkpoint)
        logging.info(
            "Weights: %s checkpoint of %s (step %s)",
            config.checkpoint,
            config.train_dir,
            info.get("step"),
        )
    else:
        params = initial_params(mconfig, model)
        if source == "random":
            logging.warning("No weights given: evaluating a RANDOMLY initialised model.")
        else:
            logging.info("Weights: %s", config.pretrained_ckpt)
            if mconfig.embedd_to_eval == "projected" and mconfig.model.output_dim > 0:
                logging.warning(
                    "Pretrained weights have no trained projection: 'projected' is a random "
                    "%d-d projection. Use --config.embedd_to_eval=backbone_out for the "
                    "off-the-shelf backbone.",
                    mconfig.model.output_dim,
                )
    norm = normalization_name(mconfig.model_class, mconfig.normalization)
    return LoadedModel(model, without_heads(params), mconfig, norm)
