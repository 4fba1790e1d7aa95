"""A rerun in a workdir must compute what the run it resumes computed (entry layer).

`config_changes(config, workdir)` compares the config with the workdir's config.json on the
fields that change what a resumed run computes (`COMPUTE_FIELDS`: the batch, the domains and
their order, the sampler, the seed, the model, the loss). The trainer stops a resume with such
changes (train/guards.py:check_unchanged) unless `config.resume_changed_config` is True, the
one way to continue anyway. Not listed, hence free to change on a resume: the step count, the
learning rates and schedule, gradient clipping (docs/training.md), evaluation and logging.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import ml_collections

from universal_embedding.errors import limits

COMPUTE_FIELDS = (
    "batch_size",
    "dataset_name",
    "sampling_strategy",
    "specialist_top_steps",
    "rng_seed",
    "classifier",
    "model_class",
    "model_type",
    "image_size",
    "resize_size",
    "normalization",
    "model",
    "loss",
    "update_sampler",
    "update_sampler_every_steps",
    "update_sampler_logit_type",
)
FREE = frozenset({"model.remat"})  # memory only: the same values


def _flat(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flat(value, name + "."))
        else:
            out[name] = list(value) if isinstance(value, tuple) else value
    return out


def _normal(name: str, value: Any) -> Any:
    if name == "dataset_name":  # 'cars, sop' == 'cars,sop'; order matters
        return [n.strip() for n in str(value or "").split(",") if n.strip()]
    return value


def changed_fields(saved: Mapping[str, Any], now: Mapping[str, Any]) -> tuple[str, ...]:
    """'name: before -> now' for each COMPUTE_FIELDS field (or sub-field) that differs."""
    before = _flat({k: saved[k] for k in COMPUTE_FIELDS if k in saved})
    after = _flat({k: now[k] for k in COMPUTE_FIELDS if k in now})
    out = []
    for name in sorted(set(before) | set(after)):
        if name in FREE or name not in before or name not in after:
            continue  # a field new to this version, or gone: nothing to compare
        a, b = _normal(name, before[name]), _normal(name, after[name])
        if a != b:
            out.append(f"{name}: {before[name]!r} -> {after[name]!r}")
    return tuple(out)


def config_changes(config: ml_collections.ConfigDict, workdir: str) -> tuple[str, ...]:
    """The changed COMPUTE_FIELDS of `config` against workdir/config.json (none without one)."""
    path = os.path.join(workdir, "config.json")
    if not os.path.isfile(path):
        return ()
    saved = limits.read_json_object(path, "Training config")
    return changed_fields(saved, config.copy_and_resolve_references().to_dict())
