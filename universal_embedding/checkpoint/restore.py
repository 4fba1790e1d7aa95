"""Reading parameters back from a training workdir: the one restore every caller uses.

`restore_params(workdir, "best" | "latest" | step)` needs no template: arrays come back as
numpy (any device count) or placed with a given sharding.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from universal_embedding.checkpoint.series import BEST, LATEST, checkpoint_dir, step_folders
from universal_embedding.errors import limits


def parse_which(which: str | int) -> tuple[str, int | None]:
    """'best' -> (BEST, None); 'latest' -> (LATEST, None); '700' or 700 -> (LATEST, 700)."""
    text = str(which).strip()
    if text == "best":
        return BEST, None
    if text == "latest":
        return LATEST, None
    if text.isdigit():
        return LATEST, int(text)
    raise ValueError(f"checkpoint must be 'best', 'latest' or a step number, got '{text}'.")


def _restore_item(path: str, item: str, step: int | None, sharding: Any) -> tuple[Any, dict, int]:
    """(tree of `item`, the JSON 'extra' dict, step) of a checkpoint series, without template."""
    handlers = {item: ocp.PyTreeCheckpointHandler(), "extra": ocp.JsonCheckpointHandler()}
    options = ocp.CheckpointManagerOptions(read_only=True)
    manager = ocp.CheckpointManager(path, options=options, item_handlers=handlers)
    try:
        steps = sorted(manager.all_steps())
        step = (steps[-1] if steps else None) if step is None else step
        if step is None or step not in steps:
            raise FileNotFoundError(
                f"No complete checkpoint of step {step} under {path} (available: {steps}); "
                "an interrupted save leaves none."
            )
        meta = manager.item_metadata(step)[item]
        tree = getattr(meta, "tree", meta)

        def restore_arg(_):
            if sharding is None:
                return ocp.RestoreArgs(restore_type=np.ndarray)
            return ocp.ArrayRestoreArgs(sharding=sharding)

        args = ocp.args.Composite(
            **{item: ocp.args.PyTreeRestore(restore_args=jax.tree.map(restore_arg, tree))},
            extra=ocp.args.JsonRestore(),
        )
        out = manager.restore(step, args=args)
    finally:
        manager.close()
    return out[item], dict(out["extra"] or {}), step


def check_links_inside(workdir: str, path: str) -> None:
    """Refuse a checkpoint folder with any entry (step folder, params, extra, their files) whose
    real path leads outside `workdir` through a symlink: another run's parameters are never
    read in this one's name."""
    root = os.path.realpath(workdir)
    for folder, dirs, files in os.walk(path, followlinks=False):
        for name in dirs + files:
            full = os.path.join(folder, name)
            if os.path.commonpath([root, os.path.realpath(full)]) != root:
                raise ValueError(
                    f"Checkpoint entry {limits.short(full)} is a symlink leading outside the "
                    f"workdir {limits.short(workdir)} (to {limits.short(os.path.realpath(full))}); "
                    "refused. Copy the checkpoint into the workdir instead of linking it."
                )


def _restore_newest_readable(path: str, sharding: Any) -> tuple[Any, dict, int]:
    """_restore_item of the newest latest step that reads; each unreadable newer step (e.g. a
    truncated file) is named in a warning. Nothing is moved: readers leave the workdir as is."""
    from universal_embedding.checkpoint import repair

    steps = step_folders(path)[::-1]
    skipped: list[str] = []
    for step in steps:
        try:
            out = _restore_item(path, "state", step, sharding)
        except FileNotFoundError as e:  # an unfinished save: orbax does not list it
            skipped.append(f"step {step} ({limits.short(str(e))})")
            continue
        except Exception as e:  # noqa: BLE001 - whatever the reader raises, the step is unusable
            skipped.append(f"{os.path.join(path, str(step))} ({repair.reason(e)})")
            continue
        if skipped:
            logging.warning(
                "Skipped unreadable latest checkpoint(s): %s; using step %d.",
                "; ".join(skipped),
                step,
            )
        return out
    if not skipped:
        return _restore_item(path, "state", None, sharding)  # no step: its own message
    raise ValueError(
        f"No readable latest checkpoint under {path}: {'; '.join(skipped)}. Pick another with "
        "--config.checkpoint=best or a step number, or train again."
    )


def restore_params(
    workdir: str, which: str | int = "best", sharding: Any = None
) -> tuple[dict, dict]:
    """(params, info) of the best, latest or step-N checkpoint of a training workdir.

    info is the checkpoint's JSON dict plus 'step' (best: also 'metric').
    """
    series, step = parse_which(which)
    path = checkpoint_dir(workdir, series)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"No {series} checkpoint at {path}. Train first (universal_embedding.main with this "
            "--workdir), pick another workdir, or pass pretrained weights instead."
        )
    item = "params" if series == BEST else "state"
    check_links_inside(workdir, path)
    if series == LATEST and step is None:
        tree, extra, step = _restore_newest_readable(path, sharding)
    else:
        tree, extra, step = _restore_item(path, item, step, sharding)
    params = tree if series == BEST else tree["params"]
    return dict(params), {**extra, "step": extra.get("step", step)}
