"""Shared command-line plumbing: --config/--workdir flags, logging, jax.distributed, writers.

Every entry point does `app.run(fn)` where `fn(config, workdir)` is one library call.

Multi-process launches (one process per host, or several on one machine):
- explicit: set `JAX_COORDINATOR_ADDRESS=host:port`, `JAX_NUM_PROCESSES=N` and
  `JAX_PROCESS_ID=i` in each process's environment (also how the localhost CPU test runs);
- cluster managers (SLURM, Open MPI, Cloud TPU pods): nothing to set, JAX detects them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any

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

METRICS_FILE = "metrics.jsonl"  # every scalar written, one JSON object per write


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


class JsonlWriter:
    """CLU-style writer appending scalars to `workdir/metrics.jsonl` (easy to read back)."""

    def __init__(self, path: str):
        self._path = path

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        row = {"step": int(step), **{k: float(v) for k, v in scalars.items()}}
        with open(self._path, "a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        del hparams

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class WandbWriter:
    """Forwards scalars and hyper-parameters to an open W&B run."""

    def __init__(self, run):
        self._run = run

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        self._run.log({k: float(v) for k, v in scalars.items()}, step=int(step))

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        self._run.config.update(dict(hparams), allow_val_change=True)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self._run.finish()


def _open_wandb(settings: Mapping[str, Any], workdir: str):
    try:
        import wandb  # optional dependency, imported only when asked for
    except ImportError as e:
        raise RuntimeError(
            "--use_wandb was given but the 'wandb' package is not installed. "
            "Install it (`.venv/bin/pip install wandb`) or drop --use_wandb."
        ) from e
    kwargs = {k: v for k, v in settings.items() if v}
    return wandb.init(dir=workdir, resume="allow", **kwargs)


class _Fanout:
    """Sends every call to several writers (CLU's MultiWriter only accepts MetricWriters)."""

    def __init__(self, writers: list):
        self._writers = writers

    def __getattr__(self, name: str):
        def call(*args, **kwargs):
            for w in self._writers:
                if hasattr(w, name):
                    getattr(w, name)(*args, **kwargs)

        return call


def create_writer(workdir: str, config=None):
    """Metric writer: TensorBoard (CLU) + metrics.jsonl (+ W&B when config.wandb is set).

    Only process 0 writes files; other processes just log.
    """
    import jax
    from clu import metric_writers

    lead = jax.process_index() == 0
    writers: list = [
        metric_writers.create_default_writer(workdir, just_logging=not lead, asynchronous=False)
    ]
    if lead:
        os.makedirs(workdir, exist_ok=True)
        writers.append(JsonlWriter(os.path.join(workdir, METRICS_FILE)))
        wandb_cfg = config.get("wandb", None) if config is not None else None
        if config is not None and config.get("use_wandb", False):
            settings = wandb_cfg.to_dict() if hasattr(wandb_cfg, "to_dict") else (wandb_cfg or {})
            writers.append(WandbWriter(_open_wandb(settings, workdir)))
    writer = _Fanout(writers)
    if config is not None and lead:
        writer.write_hparams(_flat_hparams(config))
    return writer


def read_metrics(workdir: str) -> list[dict]:
    """Rows of workdir/metrics.jsonl (what the trainer wrote), in order."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


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
