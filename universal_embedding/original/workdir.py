"""A training workdir of the original UnED code as a model config plus weights.

`resolve` reads the model spec from the workdir's config.json (model_class, model_type, model.*;
inferred from the checkpoint's shapes when there is no config.json); `load_params` maps the
chosen checkpoint's backbone + projection strictly onto the model (classifier heads are
checked by name and dropped); `init_params` gives training a start from a checkpoint's
backbone + projection + heads (`init_ckpt`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from universal_embedding.models import udon
from universal_embedding.models.spec import ModelSpec
from universal_embedding.original import checkpoint as ckpt
from universal_embedding.original import params as mapping

SIZE_FIELDS = ("hidden_size", "num_heads", "mlp_dim", "num_layers", "patch_size")


def _fields_from_config(trained: Mapping) -> dict:
    """{model_class, model_type, model: {...}} from an original config.json (what it has)."""
    model = dict(trained.get("model") or {})
    sizes = {f: model[f] for f in SIZE_FIELDS[:4] if model.get(f) is not None}
    patches = (model.get("patches") or {}).get("size")
    if patches:
        sizes["patch_size"] = int(patches[0])
    if model.get("output_dim") is not None:
        sizes["output_dim"] = int(model["output_dim"])
    out = {"model": sizes}
    for field in ("model_class", "model_type"):
        if trained.get(field):
            out[field] = trained[field]
    return out


_LAST_READ: dict = {}  # {(path, mtime, size): (params, global_step)}: resolve, then load


def _read(path: str) -> tuple[dict, int | None]:
    """read_params(path), kept until load_params takes it (a checkpoint is read once)."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
    if key not in _LAST_READ:
        _LAST_READ.clear()
        _LAST_READ[key] = ckpt.read_params(path)
    return _LAST_READ[key]


def resolve(spec: ModelSpec, workdir: str, which: str = "best") -> ModelSpec:
    """`spec` with the original run's model definition (`which`: the checkpoint to load).

    config.json gives model_class, model_type and model.*; without one they are read off the
    checkpoint's shapes. The image size is always the checkpoint's (its position embedding):
    224 for every run of the original code."""
    trained = ckpt.read_config(workdir)
    _, path = ckpt.pick(workdir, str(which))
    flat = mapping.flatten(_read(path)[0])
    fam = mapping.family(flat, path)
    if trained is not None and trained.get("model_class"):
        fields = _fields_from_config(trained)
    else:
        logging.warning("%s has no config.json: model read off the shapes in %s", workdir, path)
        fields = {"model_class": fam, "model": mapping.infer_model(flat, fam)}
    model_class = fields.get("model_class", spec.model_class)
    if model_class not in (mapping.VIT, mapping.CLIP):
        raise ValueError(
            f"{workdir}: model_class {model_class!r} is not a model class of the original UnED "
            f"code ({mapping.VIT}, {mapping.CLIP})."
        )
    model_type = fields.get("model_type", spec.model_type)
    image_size = mapping.image_size(flat, fam)
    spec = dataclasses.replace(
        spec, model_class=model_class, model_type=model_type, image_size=image_size
    )
    return spec.with_model_fields(fields["model"])


def _template(model, image_size: int) -> dict:
    """Abstract params of `model` (shapes only, nothing computed)."""
    images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
    return jax.eval_shape(lambda x: model.init(jax.random.PRNGKey(0), x), images)["params"]


def _check_family(flat: Mapping, path: str, model_class: str) -> str:
    fam = mapping.family(flat, path)
    if fam != udon.backbone_family(model_class):
        raise ckpt.OriginalCheckpointError(
            f"{path} holds {fam} parameters but the model is {model_class} (from config.json or "
            "--config.model_class): use the workdir's own config.json."
        )
    return fam


def load_params(workdir: str, which: str, model, spec: ModelSpec) -> tuple[dict, dict]:
    """(params without heads, {'step', 'path'}) of checkpoint `which` of an original workdir."""
    step, path = ckpt.pick(workdir, which)
    if str(which).strip() == "best" and step != ckpt.BEST_STEP:
        logging.warning(
            "%s has no best checkpoint (checkpoint_-1): using the newest, checkpoint_%d.",
            workdir,
            step,
        )
    params, global_step = _read(path)
    _LAST_READ.clear()
    fam = _check_family(mapping.flatten(params), path, spec.model_class)
    loaded = mapping.merge_strict(_template(model, spec.image_size), params, fam, path)
    return loaded, {"step": step, "global_step": global_step, "path": path}


def _checkpoint_path(path: str) -> str:
    """The checkpoint file an init_ckpt names: a checkpoint_<step> file, or a workdir's best."""
    if ckpt.is_checkpoint_file(path):
        return path
    if ckpt.is_original_workdir(path):
        return ckpt.pick(path, "best")[1]
    raise FileNotFoundError(
        f"init_ckpt {path} is neither a checkpoint_<step> file nor a workdir holding them "
        "(nor a training workdir of this project, with checkpoints/)."
    )


def _native_params(workdir: str, template: Mapping) -> dict:
    """Best params of a training workdir of this project, every tensor's shape checked."""
    from universal_embedding.checkpoint import restore_params

    params, _ = restore_params(workdir, "best")
    got, want = mapping.flatten(params), mapping.flatten(template)
    bad = sorted(n for n in set(got) | set(want) if np.shape(got.get(n)) != np.shape(want.get(n)))
    if bad:
        listed = ", ".join(
            f"{n} {list(np.shape(got[n])) if n in got else 'absent'} vs model "
            f"{list(np.shape(want[n])) if n in want else 'absent'}"
            for n in bad[: mapping.MAX_LISTED]
        )
        raise ckpt.OriginalCheckpointError(
            f"init_ckpt {workdir} does not fit the model ({len(bad)} tensors differ: {listed}); "
            "train with the model and heads (dataset_name, classifier) of that run."
        )
    return mapping.unflatten({n: np.asarray(v, np.float32) for n, v in got.items()})


def init_params(params: Mapping, path: str, model_class: str) -> dict:
    """Every tensor of `params` (backbone, projection, heads) replaced from checkpoint `path`."""
    if os.path.isdir(os.path.join(path, "checkpoints")):
        loaded = _native_params(path, params)
    else:
        file = _checkpoint_path(path)
        original, _ = ckpt.read_params(file)
        fam = _check_family(mapping.flatten(original), file, model_class)
        heads = mapping.head_names(
            ckpt.read_config(os.path.dirname(os.path.abspath(file))), list(params.get("heads", {}))
        )
        loaded = mapping.merge_strict(params, original, fam, file, heads)
    return jax.tree.map(jnp.asarray, loaded)
