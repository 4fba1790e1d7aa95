"""A config (as a plain dict) as JSON (the one writer of config.json / knn_config.json) and as
flat hparams. The entry points pass `config.to_dict()`."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any


def write_config_json(values: Mapping[str, Any], path: str, with_provenance: bool = True) -> str:
    """Write `values` (a config as a dict) to `path`: JSON, sorted keys, indent 2, plus a
    "provenance" object (package versions, git commit, devices) unless asked not to."""
    from universal_embedding.writers.provenance import provenance

    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    data = dict(values)
    if with_provenance:
        data["provenance"] = provenance()
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    return path


def flat_hparams(values: Mapping[str, Any]) -> dict[str, Any]:
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

    visit("", dict(values))
    return flat
