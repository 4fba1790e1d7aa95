"""jax.distributed settings from the environment, and joining a multi-process run.

Multi-process launches (one process per host, or several on one machine):
- explicit: set `JAX_COORDINATOR_ADDRESS=host:port`, `JAX_NUM_PROCESSES=N` and
  `JAX_PROCESS_ID=i` in each process's environment (also how the localhost CPU test runs);
- cluster managers (SLURM, Open MPI, Cloud TPU pods): nothing to set, JAX detects them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any


def distributed_settings(env: Mapping[str, str] = os.environ) -> dict[str, Any] | None:
    """jax.distributed.initialize arguments from the environment; None for a one-process run.

    `{}` means "let JAX detect the cluster" (SLURM with several tasks, Open MPI).
    """
    address = env.get("JAX_COORDINATOR_ADDRESS", "")
    if address:
        settings: dict[str, Any] = {"coordinator_address": address}
        for key, name in (("num_processes", "JAX_NUM_PROCESSES"), ("process_id", "JAX_PROCESS_ID")):
            if env.get(name, "") != "":
                try:
                    settings[key] = int(env[name])
                except ValueError as e:
                    raise ValueError(f"{name}={env[name]!r} is not an integer.") from e
        return settings
    if int(env.get("SLURM_NTASKS", "1")) > 1 or int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
        return {}
    return None


def maybe_initialize_distributed() -> None:
    """Join a multi-process run when one was launched (see the module docstring)."""
    import jax

    settings = distributed_settings()
    if settings is None:
        return
    if jax.distributed.is_initialized():
        return
    # CPU processes exchange data through gloo (the default CPU backend has no collectives).
    if os.environ.get("JAX_PLATFORMS", "").startswith("cpu"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**settings)
    print(
        f"jax.distributed: process {jax.process_index()} of {jax.process_count()}, "
        f"{jax.local_device_count()} local / {jax.device_count()} global devices",
        flush=True,
    )
