"""The shareable form of a trained embedding: `params.safetensors` + `config.json` side by side.

The safetensors file holds every parameter of the model without heads (backbone + projection),
keys joined by '/', and metadata {"format": "universal_embedding"}; config.json holds the fields
that define the model (as a training workdir's config.json does) plus `embedd_to_eval`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import numpy as np
from flax import traverse_util

from universal_embedding.models.spec import ModelSpec

FORMAT = "universal_embedding"
PARAMS_FILE = "params.safetensors"
CONFIG_FILE = "config.json"
_MODEL_FIELDS = ("model_class", "model_type", "image_size", "normalization", "embedd_to_eval")
# model.* fields added since config.json files were first written, with the value the code that
# wrote a file without them behaved as: the ViT ran the exact (erf) GELU before the switch.
LEGACY_MODEL_FIELDS = {"gelu_approximate": False}


def _tensors(params: Mapping) -> dict[str, np.ndarray]:
    """{'a': {'b': x}} -> {'a/b': x} as contiguous numpy arrays: the safetensors file's keys
    and values."""
    flat = traverse_util.flatten_dict(params, sep="/")
    return {name: np.ascontiguousarray(np.asarray(value)) for name, value in flat.items()}


def with_legacy_fields(model_fields: Mapping) -> tuple[dict, list[str]]:
    """(model.* of a config.json this project wrote, completed with LEGACY_MODEL_FIELDS for the
    fields it lacks; the names filled in)."""
    out = dict(model_fields)
    filled = [k for k in LEGACY_MODEL_FIELDS if k not in out]
    out.update({k: LEGACY_MODEL_FIELDS[k] for k in filled})
    return out, filled


def model_config_dict(spec: ModelSpec, embedding: str) -> dict:
    """The JSON-able fields that rebuild the model (compute settings such as dtype left out)."""
    out = {f: getattr(spec, f) for f in _MODEL_FIELDS}
    out["embedd_to_eval"] = embedding
    out["model"] = {k: v for k, v in spec.model_fields().items() if k not in ("dtype", "remat")}
    return out


def save(out_dir: str, params: Mapping, spec: ModelSpec, embedding: str) -> str:
    """Write out_dir/params.safetensors and out_dir/config.json; returns the params path."""
    from safetensors.numpy import save_file

    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, PARAMS_FILE)
    save_file(_tensors(params), path, metadata={"format": FORMAT})
    with open(os.path.join(out_dir, CONFIG_FILE), "w") as f:
        json.dump(model_config_dict(spec, embedding), f, indent=2, sort_keys=True)
    return path


def is_exported(path: str) -> bool:
    """True for a safetensors file written by `save` (checked from its header, no tensor read)."""
    if not path.endswith(".safetensors") or not os.path.isfile(path):
        return False
    from safetensors import safe_open

    try:
        with safe_open(path, framework="numpy") as f:
            return (f.metadata() or {}).get("format") == FORMAT
    except Exception:  # not a safetensors file at all: let the pretrained loader report it
        return False


def read(path: str) -> tuple[dict, dict]:
    """(params tree, config dict) of an exported model; config.json must sit beside the file."""
    from safetensors.numpy import load_file

    config_path = os.path.join(os.path.dirname(os.path.abspath(path)), CONFIG_FILE)
    if not os.path.isfile(config_path):
        raise FileNotFoundError(
            f"{config_path} not found: an exported {os.path.basename(path)} needs the "
            "config.json written next to it by `python -m universal_embedding.export`."
        )
    with open(config_path) as f:
        config = json.load(f)
    missing = [f for f in ("model_class", "model_type", "image_size", "model") if f not in config]
    if missing:
        raise ValueError(f"{config_path} lacks {', '.join(missing)}: re-export the model.")
    config["model"], _ = with_legacy_fields(config["model"])
    return traverse_util.unflatten_dict(load_file(path), sep="/"), config
