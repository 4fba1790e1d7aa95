"""neighbours.html data: sampled queries per domain with their top-k neighbours and thumbnails.

Rows come from the evaluation's own neighbour lists (knn/evaluate.py, keep_neighbours=True), so
the relevance marks (same domain and a shared label) and skips (no relevant index image) are
exactly what the metrics counted; per-query mP@k / AP@k come from knn/metrics.py. The page
itself is drawn by report/gallery_page.py. Image bytes come from a caller-supplied loader, so
neither module needs image files nor TensorFlow.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from universal_embedding.data import registry
from universal_embedding.knn import metrics
from universal_embedding.knn.evaluate import PROTOCOLS  # evaluate's names -> the page's
from universal_embedding.report.table import PROTOCOL_ORDER

# (split key 'domain/split', positions in that split) -> {position: encoded image bytes or None}
ImageLoader = Callable[[str, Sequence[int]], Mapping[int, bytes | None]]
# (split key, position) -> path of the original image file when it is on disk, else None
OriginalFiles = Callable[[str, int], str | None]


@dataclasses.dataclass(frozen=True)
class Item:
    """One image of a split: where it is, its labels, and (for neighbours) how it scored."""

    key: str
    position: int
    labels: tuple[int, ...]
    score: float = float("nan")
    relevant: bool = False

    @property
    def domain(self) -> str:
        return self.key.split("/", 1)[0]


@dataclasses.dataclass(frozen=True)
class QueryRow:
    """A sampled query, its relevant-image count n_q and its ranked neighbours."""

    query: Item
    n_relevant: int
    neighbours: tuple[Item, ...]

    @property
    def skipped(self) -> bool:
        """True when no index image is relevant: the metrics leave this query out."""
        return self.n_relevant == 0

    @property
    def first_relevant(self) -> int | None:
        """1-based rank of the first relevant neighbour shown, None when there is none."""
        return next((r for r, nb in enumerate(self.neighbours, 1) if nb.relevant), None)

    @property
    def failure(self) -> bool:
        """A scored query whose first neighbour is not relevant (R@1 counts it as a miss)."""
        return not self.skipped and not (self.neighbours and self.neighbours[0].relevant)

    def scores(self, k: int) -> dict[str, float]:
        """This query's terms of the metrics: {'top_1', 'mp_k', 'map_k'} (knn/metrics.py)."""
        rel = np.array([[nb.relevant for nb in self.neighbours[:k]]], dtype=bool).reshape(1, -1)
        out = metrics.query_metrics(rel, np.array([self.n_relevant]), k)
        return {name: float(v[0]) for name, v in out.items() if name != "valid"}


@dataclasses.dataclass(frozen=True)
class Section:
    """Rows of one kNN setup under one protocol ('separate' or 'common'), per domain."""

    knn_name: str
    protocol: str
    rows: Mapping[str, tuple[QueryRow, ...]]


@dataclasses.dataclass(frozen=True)
class QueryGroup:
    """One sampled query of one kNN setup with its rows under every protocol, side by side."""

    knn_name: str
    domain: str
    query: Item
    n_relevant: int
    by_protocol: Mapping[str, QueryRow]  # 'separate' / 'common', in that order

    @property
    def skipped(self) -> bool:
        return self.n_relevant == 0


def build_sections(
    found: Mapping[tuple[str, str, str], Any],
    labels: Mapping[str, Sequence[tuple[int, ...]]],
    *,
    num_queries: int,
    seed: int = 0,
) -> list[Section]:
    """Sections from evaluate.run_evaluation(keep_neighbours=True).neighbours, queries sampled.

    `found` maps (knn, 'separate'|'merged', domain) to evaluate.Neighbours; its relevance
    marks and relevant counts are the metrics' own. Each domain samples `num_queries`
    queries with a seed of its own, so every protocol shows the same queries.
    """
    grouped: dict[tuple[str, str], dict[str, tuple[QueryRow, ...]]] = {}
    for (knn, proto, domain), nb in found.items():
        n = len(nb.ids)
        rng = np.random.default_rng([seed, registry.get_domain(domain).id])
        picked = np.sort(rng.choice(n, size=min(num_queries, n), replace=False))
        rows = tuple(_row(nb, int(q), labels) for q in picked)
        grouped.setdefault((knn, PROTOCOLS[proto]), {})[domain] = rows
    return [Section(knn, proto, rows) for (knn, proto), rows in grouped.items()]


def _row(nb: Any, q: int, labels: Mapping[str, Sequence[tuple[int, ...]]]) -> QueryRow:
    ids = nb.ids[q]
    valid = np.nonzero(ids >= 0)[0]  # -1: fewer index rows than k
    parts, within = nb.locate(ids[valid])
    items = []
    for j, part, p in zip(valid, parts, within, strict=True):
        key = nb.index_keys[int(part)]
        rel = bool(nb.relevant[q, j])
        items.append(Item(key, int(p), tuple(labels[key][int(p)]), float(nb.scores[q, j]), rel))
    query = Item(nb.query_key, q, tuple(labels[nb.query_key][q]))
    return QueryRow(query, int(nb.n_relevant[q]), tuple(items))


def group_queries(sections: Sequence[Section]) -> list[QueryGroup]:
    """Every sampled query once per kNN setup, its protocols side by side.

    Order: kNN setups as the sections first name them, then domains, then sampled order.
    """
    groups: dict[tuple[str, str, str, int], dict[str, QueryRow]] = {}
    for s in sections:
        for domain, rows in s.rows.items():
            for r in rows:
                key = (s.knn_name, domain, r.query.key, r.query.position)
                groups.setdefault(key, {})[s.protocol] = r
    out = []
    for (knn, domain, _, _), by in groups.items():
        first = next(iter(by.values()))
        ordered = {p: by[p] for p in PROTOCOL_ORDER if p in by}
        out.append(QueryGroup(knn, domain, first.query, first.n_relevant, ordered))
    return out


@dataclasses.dataclass(frozen=True)
class Thumb:
    """A JPEG thumbnail as a data: URI, with its size in pixels."""

    uri: str
    width: int
    height: int


def thumbnail(data: bytes | None, size: int, quality: int = 75) -> Thumb | None:
    """A JPEG thumbnail (longest side at most `size`), or None if the bytes do not decode."""
    if not data:
        return None
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (size, size))  # JPEG: decode at a reduced scale, fast for photos
            im = im.convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=quality, optimize=True)
            width, height = im.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    uri = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return Thumb(uri, width, height)


def thumbnail_uri(data: bytes | None, size: int) -> str | None:
    """The data: URI of `thumbnail(data, size)`, or None if undecodable."""
    thumb = thumbnail(data, size)
    return thumb.uri if thumb else None
