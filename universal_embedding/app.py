"""Shared command-line plumbing: --config/--workdir flags, logging, jax.distributed, writers.

Every entry point does `app.run(fn)` where `fn(config, workdir)` is one library call.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from absl import app as absl_app
from absl import flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a get_config() file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where results, checkpoints and logs go.")
_USE_WANDB = flags.DEFINE_bool("use_wandb", False, "Also log to Weights & Biases.")
_WANDB_PROJECT = flags.DEFINE_string("wandb_project", None, "W&B project.")
_WANDB_GROUP = flags.DEFINE_string("wandb_group", None, "W&B group.")
_WANDB_ENTITY = flags.DEFINE_string("wandb_entity", None, "W&B entity.")
_WANDB_NAME = flags.DEFINE_string("wandb_name", None, "W&B run name.")


def maybe_initialize_distributed() -> None:
    """Join a multi-process run when one was launched (env vars set by the launcher)."""
    import jax

    if os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("SLURM_NTASKS", "1") != "1":
        jax.distributed.initialize()


def wandb_settings() -> dict | None:
    """W&B options from the flags, or None when W&B is off."""
    if not _USE_WANDB.value:
        return None
    return {
        "project": _WANDB_PROJECT.value,
        "group": _WANDB_GROUP.value,
        "entity": _WANDB_ENTITY.value,
        "name": _WANDB_NAME.value,
    }


def create_writer(workdir: str, config=None):
    """A CLU metric writer to TensorBoard under workdir (only process 0 writes)."""
    import jax
    from clu import metric_writers

    writer = metric_writers.create_default_writer(
        workdir, just_logging=jax.process_index() > 0, asynchronous=False
    )
    if config is not None and jax.process_index() == 0:
        writer.write_hparams(_flat_hparams(config))
    return writer


def _flat_hparams(config) -> dict:
    flat: dict = {}

    def visit(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                visit(f"{prefix}{k}.", v)
        elif isinstance(value, (bool, int, float, str)):
            flat[prefix[:-1]] = value

    visit("", config.to_dict())
    return flat


def write_config(config, workdir: str) -> str:
    """Save the resolved config as workdir/config.json (read back by knn_main)."""
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "config.json")
    with open(path, "w") as f:
        json.dump(config.to_dict(), f, indent=2, sort_keys=True)
    return path


def run(fn: Callable[..., object]) -> None:
    """Parse flags and call fn(config, workdir)."""

    def _main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise absl_app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
        if _CONFIG.value is None:
            raise absl_app.UsageError("--config is required (a get_config() file).")
        if not _WORKDIR.value:
            raise absl_app.UsageError("--workdir is required.")
        logging.set_verbosity(logging.INFO)
        maybe_initialize_distributed()
        fn(_CONFIG.value, _WORKDIR.value)

    absl_app.run(_main)
