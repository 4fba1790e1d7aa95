"""Weights & Biases as a clu MetricWriter (the `wandb` package is optional, imported on use)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from clu.metric_writers import interface

from universal_embedding.writers.ignoring import ArrayIgnoringWriter

SETTINGS = ("project", "group", "entity", "name")  # config.wandb fields passed to wandb.init


def _wandb_module():
    try:
        import wandb  # optional dependency, imported only when asked for
    except ImportError as e:
        raise RuntimeError(
            "W&B logging was asked for (--use_wandb or config.wandb.enabled=True) but the "
            "'wandb' package is not installed. Install it (`.venv/bin/pip install wandb`) or "
            "drop --use_wandb."
        ) from e
    return wandb


def open_wandb(settings: Mapping[str, Any], workdir: str):
    """A W&B run in `workdir` (resumed when one exists) with the non-empty `SETTINGS` fields."""
    wandb = _wandb_module()
    kwargs = {k: settings[k] for k in SETTINGS if settings.get(k)}
    from universal_embedding.writers import wandb_id

    return wandb.init(dir=workdir, id=wandb_id.run_id(workdir), resume="allow", **kwargs)


class WandbWriter(ArrayIgnoringWriter):
    """Forwards scalars, texts, images and histograms to an open W&B run; hparams to its config.

    Videos, audios and raw tensor summaries are ignored (nothing in this project writes them).
    `close()` finishes the run.
    """

    def __init__(self, run):
        self._run = run

    def write_scalars(self, step: int, scalars: Mapping[str, interface.Scalar]) -> None:
        self._run.log({k: float(v) for k, v in scalars.items()}, step=int(step))

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        self._run.log({k: str(v) for k, v in texts.items()}, step=int(step))

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        self._run.config.update(dict(hparams), allow_val_change=True)

    def write_images(self, step: int, images: Mapping[str, interface.Array]) -> None:
        wandb = _wandb_module()
        logged = {}
        for key, value in images.items():
            batch = np.asarray(value)
            batch = batch if batch.ndim == 4 else batch[None]  # [N, H, W, C]
            logged[key] = [wandb.Image(image) for image in batch]
        self._run.log(logged, step=int(step))

    def write_histograms(
        self,
        step: int,
        arrays: Mapping[str, interface.Array],
        num_buckets: Mapping[str, int] | None = None,
    ) -> None:
        wandb = _wandb_module()
        logged = {}
        for key, value in arrays.items():
            bins = (num_buckets or {}).get(key, 64)
            logged[key] = wandb.Histogram(np_histogram=np.histogram(np.asarray(value), bins=bins))
        self._run.log(logged, step=int(step))

    def flush(self) -> None:
        """W&B sends in the background; nothing to force."""

    def close(self) -> None:
        self._run.finish()
