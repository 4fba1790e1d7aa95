"""Metric writers and the config-to-JSON writer."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

METRICS_FILE = "metrics.jsonl"  # every scalar written, one JSON object per write


def write_config_json(config, path: str) -> str:
    """A ConfigDict (or dict) as sorted, indented JSON at `path` (parent folders made)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
    return path


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


def create_writer(workdir: str, wandb=None, hparams=None):
    """Metric writer: TensorBoard (CLU) + metrics.jsonl (+ W&B when wandb settings are given).

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
        if wandb:
            writers.append(WandbWriter(_open_wandb(dict(wandb), workdir)))
    writer = _Fanout(writers)
    if hparams is not None and lead:
        writer.write_hparams(dict(hparams))
    return writer


def read_metrics(workdir: str) -> list[dict]:
    """Rows of workdir/metrics.jsonl (what the trainer wrote), in order."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def flat_hparams(config) -> dict:
    flat: dict = {}

    def visit(prefix: str, value) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                visit(f"{prefix}{k}.", v)
        elif isinstance(value, (bool, int, float, str)):
            flat[prefix[:-1]] = value

    visit("", config.to_dict())
    return flat
