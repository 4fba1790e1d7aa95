"""`metrics.jsonl` as a clu MetricWriter: scalars and texts one row per write, hparams as JSON."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from clu.metric_writers import interface

from universal_embedding.writers import config_json, metrics_file


class JsonlWriter(interface.MetricWriter):
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
        config_json.write_config_json(hparams, os.path.join(folder, metrics_file.HPARAMS_FILE))

    def write_summaries(
        self,
        step: int,
        values: Mapping[str, interface.Array],
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Ignored (tensor summaries have no JSON form)."""

    def write_images(self, step: int, images: Mapping[str, interface.Array]) -> None:
        """Ignored (images go to TensorBoard)."""

    def write_videos(self, step: int, videos: Mapping[str, interface.Array]) -> None:
        """Ignored (videos go to TensorBoard)."""

    def write_audios(
        self, step: int, audios: Mapping[str, interface.Array], *, sample_rate: int
    ) -> None:
        """Ignored (audio goes to TensorBoard)."""

    def write_histograms(
        self,
        step: int,
        arrays: Mapping[str, interface.Array],
        num_buckets: Mapping[str, int] | None = None,
    ) -> None:
        """Ignored (histograms go to TensorBoard)."""

    def flush(self) -> None:
        """Nothing buffered: every write is appended and closed at once."""

    def close(self) -> None:
        """Nothing to release."""
