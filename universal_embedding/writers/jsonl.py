"""`metrics.jsonl` as a clu MetricWriter: scalars and texts one row per write, hparams as JSON."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from clu.metric_writers import interface

from universal_embedding.writers import config_json, metrics_file
from universal_embedding.writers.ignoring import ArrayIgnoringWriter


class JsonlWriter(ArrayIgnoringWriter):
    """Appends `{"step": s, name: value, ...}` rows to `path` (read back by `read_metrics`).

    Scalars are stored as floats, texts as strings; hyper-parameters go to `hparams.json` in the
    same folder. Arrays (images, videos, audios, histograms, tensor summaries) have no JSON form
    here and are ignored: the TensorBoard writer next to this one records them.
    """

    def __init__(self, path: str):
        self._path = path

    def write_scalars(self, step: int, scalars: Mapping[str, interface.Scalar]) -> None:
        metrics_file.append_row(self._path, step, {k: float(v) for k, v in scalars.items()})

    def write_texts(self, step: int, texts: Mapping[str, str]) -> None:
        metrics_file.append_row(self._path, step, {k: str(v) for k, v in texts.items()})

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        folder = os.path.dirname(self._path)
        path = os.path.join(folder, metrics_file.HPARAMS_FILE)
        config_json.write_config_json(hparams, path, with_provenance=False)

    def close(self) -> None:
        """Nothing to release."""
