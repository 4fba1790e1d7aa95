"""The metric writer of a run: TensorBoard + metrics.jsonl (+ W&B), as one clu MultiWriter."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
from clu import metric_writers

from universal_embedding.writers import metrics_file
from universal_embedding.writers.jsonl import JsonlWriter
from universal_embedding.writers.wandb_writer import WandbWriter, open_wandb


def create_writer(
    workdir: str,
    wandb: Mapping[str, Any] | None = None,
    hparams: Mapping[str, Any] | None = None,
) -> metric_writers.MetricWriter:
    """Process 0: TensorBoard files + workdir/metrics.jsonl, and W&B when `wandb` (the
    `config.wandb` fields: enabled, project, group, entity, name) has enabled=True; `hparams` are
    written once. Other processes only log."""
    if jax.process_index() != 0:
        return metric_writers.create_default_writer(just_logging=True, asynchronous=False)
    os.makedirs(workdir, exist_ok=True)
    writers = [
        metric_writers.create_default_writer(workdir, asynchronous=False),
        JsonlWriter(os.path.join(workdir, metrics_file.METRICS_FILE)),
    ]
    if wandb is not None and wandb["enabled"]:
        writers.append(WandbWriter(open_wandb(wandb, workdir)))
    writer = metric_writers.MultiWriter(writers)
    if hparams is not None:
        writer.write_hparams(dict(hparams))
    return writer
