"""The metrics.jsonl format: one JSON object per write, `step` plus the values written."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

METRICS_FILE = "metrics.jsonl"  # every scalar (and text) written, one JSON object per write
HPARAMS_FILE = "hparams.json"  # the hyper-parameters written, next to METRICS_FILE


def append_row(path: str, step: int, values: Mapping[str, Any]) -> None:
    """Append {'step': step, **values} as one line of `path`."""
    with open(path, "a") as f:
        f.write(json.dumps({"step": int(step), **values}, sort_keys=True) + "\n")


def read_metrics(workdir: str) -> list[dict]:
    """Rows of workdir/metrics.jsonl (what the trainer wrote), in order; [] when absent."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
