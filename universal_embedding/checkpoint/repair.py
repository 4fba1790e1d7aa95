"""Resuming from a damaged checkpoint series: skip unreadable steps, refuse another model.

A step whose files are truncated or whose metadata is missing cannot be restored; the
newest step that can is used instead, and the unreadable ones are moved to
`<workdir>/checkpoints/corrupt/` (so the manager can save those step numbers again) with a
warning naming them. A checkpoint written for other parameter shapes is not damaged: that is
a config mistake, reported in one line without touching anything.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

CORRUPT = "corrupt"


class ModelMismatch(ValueError):
    """The checkpoint holds parameters of other names or shapes than the config's model."""


class NoIntactCheckpoint(RuntimeError):
    """Every checkpoint step of the series failed to restore."""


def _shapes(tree: Any) -> dict[str, tuple]:
    """{'backbone/Transformer/.../kernel': shape} of a tree of arrays or array metadata."""
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        jax.tree_util.keystr(path, simple=True, separator="/"): tuple(getattr(leaf, "shape", ()))
        for path, leaf in flat
    }


def _template_params(template: Any) -> Any:
    if hasattr(template, "params"):
        return template.params
    return template.get("params") if isinstance(template, dict) else None


def check_params_shapes(manager: ocp.CheckpointManager, step: int, template: Any) -> None:
    """ModelMismatch naming the first differing parameter; errors if the metadata is unreadable."""
    params = _template_params(template)
    if params is None:
        return
    path = os.path.join(str(manager.directory), str(step), "state")
    meta = ocp.PyTreeCheckpointHandler().metadata(epath.Path(path))
    tree = getattr(meta, "tree", meta)
    if not isinstance(tree, dict) or "params" not in tree:
        raise FileNotFoundError(f"no parameter metadata in {path}")
    saved, wanted = _shapes(tree["params"]), _shapes(params)
    for name in sorted(set(saved) | set(wanted)):
        if saved.get(name) != wanted.get(name):
            there = saved.get(name, "absent")
            here = wanted.get(name, "absent")
            raise ModelMismatch(
                f"The checkpoint of step {step} in {manager.directory} was written for another "
                f"model: parameter {name} is {there} there but {here} with this config. Resume "
                "with the config the run was started with (its config.json), or use a new "
                "--workdir."
            )


def _reason(error: BaseException) -> str:
    """'Type: first line of the message' (TensorStore's spec dump cut off), at most 160 chars."""
    text = str(error).strip().splitlines()
    first = text[0].split(" See full TensorStore details")[0] if text else ""
    return f"{type(error).__name__}: {first[:160]}"


def _set_aside(manager: ocp.CheckpointManager, workdir: str, steps: list[int]) -> str:
    """Move unreadable step folders to <workdir>/checkpoints/corrupt/ (process 0), reload."""
    target = os.path.join(os.path.abspath(workdir), "checkpoints", CORRUPT)
    if jax.process_index() == 0:
        os.makedirs(target, exist_ok=True)
        for step in steps:
            dest, n = os.path.join(target, str(step)), 1
            while os.path.exists(dest):
                dest, n = os.path.join(target, f"{step}.{n}"), n + 1
            shutil.move(os.path.join(str(manager.directory), str(step)), dest)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("universal_embedding:corrupt_checkpoints_moved")
    manager.reload()
    return target


def restore_newest_intact(
    manager: ocp.CheckpointManager,
    workdir: str,
    steps: list[int],
    restore: Callable[[int], Any],
) -> Any:
    """restore(step) for the first of `steps` (newest first) that restores; see module doc."""
    skipped: list[tuple[int, str]] = []
    for step in steps:
        try:
            result = restore(step)
        except ModelMismatch:
            raise
        except Exception as e:  # noqa: BLE001 - whatever the reader raises, the step is unusable
            skipped.append((step, _reason(e)))
            continue
        if skipped:
            target = _set_aside(manager, workdir, [s for s, _ in skipped])
            logging.warning(
                "Skipped unreadable checkpoint(s) %s under %s; moved them to %s; resuming "
                "from step %d.",
                "; ".join(f"step {s} ({why})" for s, why in skipped),
                manager.directory,
                target,
                step,
            )
        return result
    raise NoIntactCheckpoint(
        f"No intact checkpoint under {manager.directory}: "
        + "; ".join(f"step {s} ({why})" for s, why in skipped)
        + ". Move that folder away to train from step 0, or use a new --workdir."
    )


set_aside = _set_aside  # for the best series (series.py)
reason = _reason
