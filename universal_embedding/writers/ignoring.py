"""A clu MetricWriter base whose array writes are no-ops, for writers that keep scalars/texts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clu.metric_writers import interface


class ArrayIgnoringWriter(interface.MetricWriter):
    """Tensor summaries, images, videos, audios and histograms are ignored unless overridden.

    The TensorBoard writer combined with every subclass records them.
    """

    def write_summaries(
        self,
        step: int,
        values: Mapping[str, interface.Array],
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Ignored."""

    def write_images(self, step: int, images: Mapping[str, interface.Array]) -> None:
        """Ignored."""

    def write_videos(self, step: int, videos: Mapping[str, interface.Array]) -> None:
        """Ignored."""

    def write_audios(
        self, step: int, audios: Mapping[str, interface.Array], *, sample_rate: int
    ) -> None:
        """Ignored."""

    def write_histograms(
        self,
        step: int,
        arrays: Mapping[str, interface.Array],
        num_buckets: Mapping[str, int] | None = None,
    ) -> None:
        """Ignored."""

    def flush(self) -> None:
        """Nothing buffered."""
