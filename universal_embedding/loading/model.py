"""One place that turns a model spec and a weight source into a model plus its weights.

Weights come from a training workdir (`train_dir`: its config.json defines the model, its best /
latest / step-N checkpoint the params; a workdir of the original UnED code, with flax
`checkpoint_<step>` files, is read too: see original/workdir.py), a pretrained file
(`pretrained_ckpt`: backbone only) or a seeded random init (`allow_random_init=True` for
evaluation; the default start of training). `resolve_spec` reads the model a workdir was trained
with (once, at the entry point); `load_model` builds it and loads its weights.
Training, `knn_main`, `extract_dir_descriptors`, the demo and the trainer's evaluators all call
this module; missing weights fail loudly.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import jax
import numpy as np
from absl import logging

from universal_embedding.checkpoint import restore_params
from universal_embedding.data.normalization import normalization_name
from universal_embedding.errors import limits
from universal_embedding.loading import exported
from universal_embedding.models import embedding_model, udon
from universal_embedding.models.spec import ModelSpec
from universal_embedding.original import checkpoint as original_ckpt
from universal_embedding.original import workdir as original_workdir

# Fields of a training config that define the model (and so how its images are prepared).
MODEL_FIELDS = ("model_class", "model_type", "image_size", "normalization")
# model.* fields that are compute settings of this run, not part of the trained model.
COMPUTE_FIELDS = ("dtype", "attention", "remat")
SOURCES = ("train_dir", "pretrained", "random")
DINOV2 = "dinov2_vit_with_embedding"


@dataclasses.dataclass(frozen=True)
class WeightSource:
    """Where the weights come from: a training workdir and which of its checkpoints, a
    pretrained backbone file, or a seeded random init (only when allowed on purpose).
    `init_ckpt` (training only) starts every tensor from a trained model."""

    train_dir: str = ""
    checkpoint: str = "best"  # 'best' | 'latest' | '<step>' of train_dir
    pretrained_ckpt: str = ""
    allow_random_init: bool = False
    rng_seed: int = 0
    init_ckpt: str = ""


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """A model without heads, its params, and the resolved spec that defines it."""

    model: embedding_model.EmbeddingModel | udon.UdonModel
    params: dict
    spec: ModelSpec  # the model as trained (train_dir) or as given
    normalization: str  # 'clip' | 'imagenet': how its images must be normalised
    # The checkpoint step the weights were read from (train_dir only; None otherwise): for
    # 'latest' the step actually restored, an older one when newer steps were unreadable.
    step: int | None = None


def resolve_spec(spec: ModelSpec, source: WeightSource) -> ModelSpec:
    """`spec` with the model definition read from `source.train_dir`/config.json (if set)."""
    if not source.train_dir:
        return spec
    if original_ckpt.is_original_workdir(source.train_dir):
        return original_workdir.resolve(spec, source.train_dir, source.checkpoint)
    path = os.path.join(source.train_dir, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} not found: --config.train_dir must be a training workdir written by "
            "`python -m universal_embedding.main` (it holds config.json and checkpoints/). "
            "For off-the-shelf weights use --config.train_dir='' --config.pretrained_ckpt=PATH."
        )
    trained = limits.read_json_object(path, "Training config")
    check_field_types(trained, path)
    changes = {field: trained[field] for field in MODEL_FIELDS if field in trained}
    if udon.is_udon(trained.get("model_class", "")):  # teachers are numbered by these
        changes["domains"] = tuple(
            n.strip() for n in trained["dataset_name"].split(",") if n.strip()
        )
    saved = saved_model_fields(trained, path)
    resolved = dataclasses.replace(spec, **changes)
    return resolved.with_model_fields({k: v for k, v in saved.items() if k not in COMPUTE_FIELDS})


FIELD_TYPES = {"model_class": str, "model_type": str, "image_size": int, "normalization": str}
FIELD_TYPES |= {"dataset_name": str, "model": dict, "output_dim": int}


def check_field_types(trained: Mapping, path: str) -> None:
    """One line naming config.json and each model field of the wrong type (or a non-positive
    image_size) before any of them builds a model."""
    wrong = [
        f"{name}={limits.short(trained[name], 40)!r} (not {kind.__name__})"
        for name, kind in FIELD_TYPES.items()
        if name in trained
        and not (isinstance(trained[name], kind) and type(trained[name]) is not bool)
    ]
    if isinstance(trained.get("image_size"), int) and trained["image_size"] <= 0:
        wrong.append(f"image_size={trained['image_size']} (not positive)")
    if wrong:
        raise ValueError(f"{path}: wrong field types: {', '.join(wrong)}; fix or remove the file.")


def normalization_of(spec: ModelSpec) -> str:
    """'clip' | 'imagenet': how the images of `spec`'s model must be normalised."""
    return normalization_name(spec.model_class, spec.normalization)


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


def check_same_numerics(spec: ModelSpec, workdir: str) -> None:
    """Resuming `workdir` must keep the model numerics it was trained with (its config.json)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        return
    trained = saved_model_fields(limits.read_json_object(path, "Training config"), path)
    family = udon.backbone_family(spec.model_class)
    name = "gelu_approximate"
    now = spec.gelu_approximate
    gelu_families = ("vit_with_embedding", "siglip_vit_with_embedding")  # CLIP: quick-GELU
    if family in gelu_families and name in trained and trained[name] != now:
        raise ValueError(
            f"{workdir} was trained with config.model.{name}={trained[name]} and is resumed with "
            f"{now}: add --config.model.{name}={trained[name]} (or use a new workdir)."
        )


def weights_source(source: WeightSource) -> str:
    """'train_dir', 'pretrained' or 'random'; raises when no weights were named on purpose."""
    if source.train_dir:
        if original_ckpt.is_checkpoint_file(source.train_dir):
            raise FileNotFoundError(
                f"train_dir {source.train_dir} is a checkpoint file: give the workdir holding it "
                f"(--config.train_dir={os.path.dirname(os.path.abspath(source.train_dir))}) and "
                "pick the step with --config.checkpoint=best|latest|<step>."
            )
        if not os.path.isdir(source.train_dir):
            raise FileNotFoundError(
                f"train_dir {source.train_dir} does not exist: give a training workdir "
                "(it holds config.json and checkpoints/)."
            )
        return "train_dir"
    if source.pretrained_ckpt:
        if not os.path.isfile(source.pretrained_ckpt):
            raise FileNotFoundError(
                f"pretrained_ckpt {source.pretrained_ckpt} does not exist. Give an existing "
                "weight file (.npz / .npy / .pt / .bin / .safetensors) or a --config.train_dir."
            )
        return "pretrained"
    if source.allow_random_init:
        return "random"
    raise ValueError(
        "No weights given: set --config.train_dir=<training workdir> or "
        "--config.pretrained_ckpt=<weight file>. To evaluate a random model on purpose "
        "(a baseline), set --config.allow_random_init=True."
    )


def initial_params(spec: ModelSpec, model, source: WeightSource) -> dict:
    """Seeded random init of every part of `model`; then every tensor from source.init_ckpt
    (a trained model: backbone, projection, heads) or else the backbone from
    source.pretrained_ckpt, if set."""
    params = embedding_model.init_params(
        model, jax.random.PRNGKey(source.rng_seed), spec.image_size
    )
    if source.init_ckpt:
        if not os.path.exists(source.init_ckpt):
            raise FileNotFoundError(
                f"init_ckpt {source.init_ckpt} does not exist: give a checkpoint_<step> file or "
                "a training workdir (of this project or of the original code)."
            )
        return original_workdir.init_params(params, source.init_ckpt, spec.model_class)
    if source.pretrained_ckpt:
        from universal_embedding.pretrained import load_pretrained

        params = load_pretrained(params, source.pretrained_ckpt, spec)
    return params


def with_file_registers(spec: ModelSpec, path: str) -> ModelSpec:
    """A DINOv2 spec whose register count is not given takes the count the file holds."""
    if spec.num_registers is not None or udon.backbone_family(spec.model_class) != DINOV2:
        return spec
    from universal_embedding.pretrained import dinov2

    return dataclasses.replace(spec, num_registers=dinov2.registers_in_file(path))


def without_heads(params: Mapping) -> dict:
    """Params of the embedding alone (backbone + projection): what extraction needs."""
    return {k: v for k, v in params.items() if k != "heads"}


def check_loaded(model, params: Mapping, spec: ModelSpec, config_path: str) -> None:
    """Loaded params must have the shapes the model of `spec` (read from `config_path`) gives
    them, and hold finite values: a config.json contradicting its checkpoint (image_size,
    output_dim, model size) is one line naming both before any image is embedded."""
    from flax import traverse_util

    abstract = jax.eval_shape(
        lambda: embedding_model.init_params(model, jax.random.PRNGKey(0), spec.image_size)
    )
    want = traverse_util.flatten_dict(without_heads(abstract), sep="/")
    got = traverse_util.flatten_dict(without_heads(params), sep="/")
    wrong = [
        f"{name}: checkpoint {tuple(np.shape(got[name]))}, config {tuple(want[name].shape)}"
        for name in sorted(set(want) & set(got))
        if tuple(np.shape(got[name])) != tuple(want[name].shape)
    ]
    wrong += [f"{name}: missing in the checkpoint" for name in sorted(set(want) - set(got))]
    if wrong:
        raise ValueError(
            f"{config_path} (image_size={spec.image_size}, output_dim={spec.output_dim}, "
            f"model_type={spec.model_type!r}) contradicts its weights: {'; '.join(wrong[:3])}"
            f"{f' and {len(wrong) - 3} more' if len(wrong) > 3 else ''}. Fix config.json or use "
            "the weights it was written with."
        )
    for name, value in got.items():
        bad = int(np.size(value) - np.isfinite(np.asarray(value, np.float32)).sum())
        if bad:
            raise ValueError(
                f"Weights of {config_path}: tensor '{name}' holds {bad} non-finite value(s) (NaN "
                "or inf); refused. Use another checkpoint or export it again."
            )


def load_model(spec: ModelSpec, source: WeightSource) -> LoadedModel:
    """The model without heads plus the weights `source` names (workdir, file or random).

    `spec` is the resolved one (`resolve_spec(spec, source)`, done once by the entry point)."""
    kind = weights_source(source)
    if kind == "pretrained":
        spec = with_file_registers(spec, source.pretrained_ckpt)
    model = embedding_model.build_model(spec, None)
    if kind == "train_dir" and original_ckpt.is_original_workdir(source.train_dir):
        params, info = original_workdir.load_params(
            source.train_dir, source.checkpoint, model, spec
        )
        logging.info("Weights: %s (original UnED checkpoint)", info["path"])
        step = info["step"]
    elif kind == "train_dir":
        params, info = restore_params(source.train_dir, source.checkpoint)
        check_loaded(model, params, spec, os.path.join(source.train_dir, "config.json"))
        logging.info(
            "Weights: %s checkpoint of %s (step %s)",
            source.checkpoint,
            source.train_dir,
            info.get("step"),
        )
        step = info.get("step")
    else:
        step = None
        params = initial_params(spec, model, source)
        if kind == "random":
            logging.warning("No weights given: evaluating a RANDOMLY initialised model.")
        else:
            logging.info("Weights: %s", source.pretrained_ckpt)
            if spec.embedd_to_eval == "projected" and spec.output_dim > 0:
                logging.warning(
                    "Pretrained weights have no trained projection: 'projected' is a random "
                    "%d-d projection. Use --config.embedd_to_eval=backbone_out for the "
                    "off-the-shelf backbone.",
                    spec.output_dim,
                )
    return LoadedModel(model, without_heads(params), spec, normalization_of(spec), step)
