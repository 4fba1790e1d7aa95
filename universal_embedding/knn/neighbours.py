"""neighbours.html: sampled queries per domain with their top-k neighbours as thumbnails.

A page to look at what the embedding retrieves: each row is one query image followed by its
k nearest index images (inline base64 JPEG thumbnails), each marked relevant (same domain and a
shared label, as in the metrics) or not, with its similarity and class. Queries without any
relevant index image are marked as skipped, exactly as the metrics leave them out.
Rows come from the evaluation's own neighbour lists (knn/evaluate.py, keep_neighbours=True), so
the marks are exactly what the metrics counted. Image bytes come from a caller-supplied loader,
so this module needs neither image files nor TensorFlow.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from universal_embedding.data import registry

# (split key 'domain/split', positions in that split) -> {position: encoded image bytes or None}
ImageLoader = Callable[[str, Sequence[int]], Mapping[int, bytes | None]]


@dataclasses.dataclass(frozen=True)
class Item:
    """One image of a split: where it is, its labels, and (for neighbours) how it scored."""

    key: str
    position: int
    labels: tuple[int, ...]
    score: float = float("nan")
    relevant: bool = False


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


@dataclasses.dataclass(frozen=True)
class Section:
    """Rows of one kNN setup under one protocol ('separate' or 'common'), per domain."""

    knn_name: str
    protocol: str
    rows: Mapping[str, tuple[QueryRow, ...]]


# evaluate.Neighbours protocol names -> the names results keys (and this page) use.
PROTOCOL_NAMES = {"separate": "separate", "merged": "common"}


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
        grouped.setdefault((knn, PROTOCOL_NAMES[proto]), {})[domain] = rows
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


def thumbnail_uri(data: bytes | None, size: int) -> str | None:
    """A data: URI of a JPEG thumbnail (longest side `size`), or None if undecodable."""
    if not data:
        return None
    try:
        with Image.open(io.BytesIO(data)) as im:
            im = im.convert("RGB")
            im.thumbnail((size, size))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=80)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


_CSS = """body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;margin-bottom:1em}
td{vertical-align:top;padding:4px;font-size:11px;text-align:center;max-width:140px;word-wrap:break-word}
td.query{background:#eef}td.rel{background:#cfc}td.nonrel{background:#fcc}
tr.skipped td.query{background:#ddd}.missing{width:96px;height:96px;background:#999;color:#fff}"""


def _cell(cls: str, uri: str | None, lines: Sequence[str], path: str, attrs: str = "") -> str:
    img = f'<img src="{uri}">' if uri else '<div class="missing">image unavailable</div>'
    text = "<br>".join(html.escape(x) for x in lines)
    title = f' title="{html.escape(path)}"' if path else ""
    return f'<td class="{cls}"{title}{attrs}>{img}<br>{text}</td>'


def _classes(item: Item) -> str:
    return "class " + ",".join(str(c) for c in item.labels)


def render_html(
    sections: Sequence[Section],
    loader: ImageLoader,
    paths: Mapping[str, Sequence[str]],
    *,
    k: int,
    thumb_size: int = 128,
    title: str = "Nearest neighbours",
) -> str:
    """The whole page: one table per section and domain, thumbnails loaded through `loader`."""
    wanted: dict[str, set[int]] = {}
    for s in sections:
        for rows in s.rows.values():
            for r in rows:
                for it in (r.query, *r.neighbours):
                    wanted.setdefault(it.key, set()).add(it.position)
    uris = {
        (key, p): thumbnail_uri(data, thumb_size)
        for key, pos in wanted.items()
        for p, data in loader(key, sorted(pos)).items()
    }
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"]
    out += [f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    out.append(
        "<p>Green: relevant (same domain, shared class), red: not relevant. Grey queries have no"
        " relevant index image and are skipped by the metrics. Hover an image for its path.</p>"
    )
    for s in sections:
        sid = f"{s.knn_name}-{s.protocol}"
        out.append(f'<h2 id="{sid}">{html.escape(s.knn_name)}, {s.protocol} index</h2>')
        for domain, rows in s.rows.items():
            scored = [r for r in rows if not r.skipped]
            hits = sum(bool(r.neighbours) and r.neighbours[0].relevant for r in scored)
            out.append(
                f'<h3 class="domain" data-domain="{domain}">{html.escape(domain)}: '
                f"{len(rows)} sampled queries, top-1 relevant {hits}/{len(scored)}</h3><table>"
            )
            for r in rows:
                out.append(_render_row(r, uris, paths, k))
            out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out)


def _path(paths: Mapping[str, Sequence[str]], item: Item) -> str:
    return paths[item.key][item.position] if item.key in paths else ""


def _render_row(r: QueryRow, uris: Mapping, paths: Mapping[str, Sequence[str]], k: int) -> str:
    q = r.query
    skipped = ' class="skipped"' if r.skipped else ""
    q_lines = [f"query {q.key} #{q.position}", _classes(q), f"{r.n_relevant} relevant in index"]
    cells = [_cell("query", uris.get((q.key, q.position)), q_lines, _path(paths, q))]
    for rank, nb in enumerate(r.neighbours[:k], start=1):
        mark = "relevant" if nb.relevant else "not relevant"
        lines = [f"{rank}. sim {nb.score:.3f}", mark, _classes(nb), f"{nb.key} #{nb.position}"]
        attrs = f' data-rank="{rank}" data-relevant="{int(nb.relevant)}"'
        cls = "nb rel" if nb.relevant else "nb nonrel"
        uri = uris.get((nb.key, nb.position))
        cells.append(_cell(cls, uri, lines, _path(paths, nb), attrs))
    return f'<tr{skipped} data-skipped="{int(r.skipped)}">' + "".join(cells) + "</tr>"


def write_neighbours_html(
    path: str,
    sections: Sequence[Section],
    loader: ImageLoader,
    paths: Mapping[str, Sequence[str]],
    *,
    k: int,
    thumb_size: int = 128,
) -> str:
    """Render and write the page to `path`; returns the path."""
    page = render_html(sections, loader, paths, k=k, thumb_size=thumb_size)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    return path
