"""Metric writers (clu `MetricWriter`s) and the project's one config-to-JSON writer.

`create_writer` combines TensorBoard, `metrics.jsonl` and optionally W&B with clu's
`MultiWriter`. clu imports TensorFlow, so the writer classes load on first use: importing this
package (for `write_config_json`, `flat_hparams`, `read_metrics`) stays TensorFlow-free.
"""

from __future__ import annotations

import importlib
from typing import Any

from universal_embedding.writers.config_json import flat_hparams, write_config_json
from universal_embedding.writers.metrics_file import (
    HPARAMS_FILE,
    METRICS_FILE,
    drop_torn_tail,
    read_metrics,
)

# name -> module defining it, imported when the name is first used (they import clu).
_LAZY = {
    "JsonlWriter": "universal_embedding.writers.jsonl",
    "WandbWriter": "universal_embedding.writers.wandb_writer",
    "open_wandb": "universal_embedding.writers.wandb_writer",
    "create_writer": "universal_embedding.writers.create",
}

__all__ = [
    "HPARAMS_FILE",
    "METRICS_FILE",
    "drop_torn_tail",
    "flat_hparams",
    "read_metrics",
    "write_config_json",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
