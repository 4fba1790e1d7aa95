"""A config as JSON (the one writer of config.json / knn_config.json) and as flat hparams."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import ml_collections


def _as_dict(config: ml_collections.ConfigDict | Mapping[str, Any]) -> dict:
    if isinstance(config, ml_collections.ConfigDict):
        return config.to_dict()
    return dict(config)


def write_config_json(
    config: ml_collections.ConfigDict | Mapping[str, Any], path: str, with_provenance: bool = True
) -> str:
    """Write `config` (ConfigDict or dict) to `path`: JSON, sorted keys, indent 2, plus a
    "provenance" object (package versions, git commit, devices) unless asked not to."""
    from universal_embedding.writers.provenance import provenance

    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    data = _as_dict(config)
    if with_provenance:
        data["provenance"] = provenance()
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    return path


def flat_hparams(config: ml_collections.ConfigDict | Mapping[str, Any]) -> dict[str, Any]:
    """{'model.output_dim': 64, ...}: the bool / int / float / str leaves, dotted keys.

    None (unset size overrides) and lists are left out: hparams back ends take scalars only.
    """
    flat: dict[str, Any] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                visit(f"{prefix}{k}.", v)
        elif isinstance(value, (bool, int, float, str)):
            flat[prefix[:-1]] = value

    visit("", _as_dict(config))
    return flat
