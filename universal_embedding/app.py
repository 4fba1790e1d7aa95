"""Shared command-line plumbing: --config/--workdir flags, logging, jax.distributed, writers.

Every entry point does `app.run(fn)` where `fn(config, workdir)` is one library call.

Multi-process launches (one process per host, or several on one machine):
- explicit: set `JAX_COORDINATOR_ADDRESS=host:port`, `JAX_NUM_PROCESSES=N` and
  `JAX_PROCESS_ID=i` in each process's environment (also how the localhost CPU test runs);
- cluster managers (SLURM, Open MPI, Cloud TPU pods): nothing to set, JAX detects them.
"""

from __future__ import annotations

from collections.abc import Callable

from absl import app as absl_app
from absl import flags, logging
from ml_collections import config_flags

from universal_embedding.distributed import maybe_initialize_distributed

_CONFIG = config_flags.DEFINE_config_file("config", None, "Path to a get_config() file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where results, checkpoints and logs go.")
_USE_WANDB = flags.DEFINE_bool("use_wandb", False, "Also log to Weights & Biases.")
_WANDB_PROJECT = flags.DEFINE_string("wandb_project", None, "W&B project.")
_WANDB_GROUP = flags.DEFINE_string("wandb_group", None, "W&B group.")
_WANDB_ENTITY = flags.DEFINE_string("wandb_entity", None, "W&B entity.")
_WANDB_NAME = flags.DEFINE_string("wandb_name", None, "W&B run name.")


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


def run(fn: Callable[..., object]) -> None:
    """Parse flags and call fn(config, workdir)."""

    def _main(argv: list[str]) -> None:
        if len(argv) > 1:
            raise absl_app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
        if _CONFIG.value is None:
            raise absl_app.UsageError("--config is required (a get_config() file).")
        if not _WORKDIR.value:
            raise absl_app.UsageError("--workdir is required.")
        if not flags.FLAGS["verbosity"].present:  # --verbosity=0 shows INFO (orbax is chatty)
            logging.set_verbosity(logging.WARNING)
        config = _CONFIG.value
        wandb = wandb_settings()
        if wandb is not None:
            with config.unlocked():
                config.use_wandb = True
                config.wandb = wandb
        maybe_initialize_distributed()
        fn(config, _WORKDIR.value)

    absl_app.run(_main)
