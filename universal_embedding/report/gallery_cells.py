"""Cells and rows of neighbours.html (report/gallery_page.py assembles the pages).

A row is one query with its neighbours under each protocol; each neighbour cell carries its
relevance three ways: a mark in text (check / cross), data attributes, colour and border style.
"""

from __future__ import annotations

import html
import json
import os
import urllib.parse
from collections.abc import Mapping, Sequence

from universal_embedding.report.neighbour_rows import (
    Item,
    OriginalFiles,
    QueryGroup,
    QueryRow,
    Thumb,
)

PROTOCOL_TITLES = {"separate": "Separate index", "common": "Common index"}


def esc(value: object) -> str:
    """HTML-escaped text, quotes included (safe in attributes)."""
    return html.escape(str(value), quote=True)


class PageContext:
    """What every cell of one page needs: thumbnail ids, paths, links, k."""

    def __init__(
        self,
        thumbs: Mapping[tuple[str, int], Thumb | None],
        paths: Mapping[str, Sequence[str]],
        originals: OriginalFiles | None,
        page_dir: str,
        k: int,
    ):
        self.thumbs, self.paths, self.originals, self.k = thumbs, paths, originals, k
        self.page_dir = page_dir
        self.ids: dict[tuple[str, int], str] = {}

    def path(self, item: Item) -> str:
        names = self.paths.get(item.key)
        return names[item.position] if names is not None else f"{item.key} #{item.position}"

    def href(self, item: Item) -> str | None:
        full = self.originals(item.key, item.position) if self.originals else None
        if not full:
            return None
        try:
            rel = os.path.relpath(full, self.page_dir).replace(os.sep, "/")
        except ValueError:  # another drive: an absolute file URL
            return "file://" + urllib.parse.quote(os.path.abspath(full).replace(os.sep, "/"))
        return urllib.parse.quote(rel)

    def image(self, item: Item, alt: str) -> str:
        thumb = self.thumbs.get((item.key, item.position))
        if thumb is None:
            label = esc(f"{alt} (image unavailable)")
            return f'<span class="missing" role="img" aria-label="{label}">image unavailable</span>'
        tid = self.ids.setdefault((item.key, item.position), f"t{len(self.ids)}")
        img = (
            f'<img alt="{esc(alt)}" data-thumb="{tid}" width="{thumb.width}" '
            f'height="{thumb.height}" decoding="async">'
        )
        href = self.href(item)
        return f'<a href="{esc(href)}" title="open the original">{img}</a>' if href else img

    def thumbs_json(self) -> str:
        data = {tid: self.thumbs[key].uri for key, tid in self.ids.items()}
        return json.dumps(data, separators=(",", ":")).replace("</", "<\\/")


def _breakable(path: str) -> str:
    """Escaped path that wraps after its slashes rather than inside a name."""
    return esc(path).replace("/", "/<wbr>")


def _classes(item: Item) -> str:
    word = "class" if len(item.labels) == 1 else "classes"
    return f"{word} {', '.join(str(c) for c in item.labels)}"


def _badge(domain: str, query_domain: str) -> str:
    other = "" if domain == query_domain else " other"
    return f'<span class="badge{other}">{esc(domain)}</span>'


def _query_cell(g: QueryGroup, page: PageContext) -> str:
    q, path = g.query, page.path(g.query)
    note = "skipped by the metrics" if g.skipped else ""
    return (
        f'<th scope="row"><span class="cell query">{page.image(q, f"query: {path}")}'
        f"<strong>query</strong> {_badge(q.domain, q.domain)}{esc(_classes(q))}<br>"
        f'<span class="path">{_breakable(path)}</span><br>{g.n_relevant} relevant in index'
        f"{'<br>' + note if note else ''}</span></th>"
    )


def _neighbour_cell(nb: Item, rank: int, query_domain: str, page: PageContext) -> str:
    mark = "✓ relevant" if nb.relevant else "✗ not relevant"
    cls = "rel" if nb.relevant else "nonrel"
    path = page.path(nb)
    return (
        f'<li class="cell nb {cls}" data-rank="{rank}" data-relevant="{int(nb.relevant)}" '
        f'data-domain="{esc(nb.domain)}">{page.image(nb, f"rank {rank}, {mark}: {path}")}'
        f'<span class="mark">{mark}</span><br>#{rank} · sim {nb.score:.3f}<br>'
        f"{_badge(nb.domain, query_domain)}{esc(_classes(nb))}<br>"
        f'<span class="path">{_breakable(path)}</span></li>'
    )


def _stats(protocol: str, row: QueryRow, k: int) -> str:
    name = f"<strong>{esc(protocol)}</strong>"
    if row.skipped:
        return f"{name} · skipped: no relevant image in this index"
    s, first = row.scores(k), row.first_relevant
    where = f"first ✓ at rank {first}" if first else f"no ✓ in the top {k}"
    return f"{name} · mP@{k} {s[f'mp_{k}']:.2f} · AP@{k} {s[f'map_{k}']:.2f} · {where}"


def _protocol_cell(protocol: str, row: QueryRow, page: PageContext) -> str:
    nbs = "".join(
        _neighbour_cell(nb, rank, row.query.domain, page)
        for rank, nb in enumerate(row.neighbours[: page.k], start=1)
    )
    return (
        f'<td data-protocol="{protocol}" data-failure="{int(row.failure)}" '
        f'data-skipped="{int(row.skipped)}" data-first-relevant="{row.first_relevant or 0}">'
        f'<p class="stats">{_stats(protocol, row, page.k)}</p><ol class="nbs">{nbs}</ol></td>'
    )


def query_row(g: QueryGroup, order: int, page: PageContext) -> str:
    failure = any(r.failure for r in g.by_protocol.values())
    cells = "".join(_protocol_cell(p, r, page) for p, r in g.by_protocol.items())
    return (
        f'<tr class="qrow{" skipped" if g.skipped else ""}" data-domain="{esc(g.domain)}" '
        f'data-knn="{esc(g.knn_name)}" data-failure="{int(failure)}" '
        f'data-skipped="{int(g.skipped)}" data-order="{order}">{_query_cell(g, page)}{cells}</tr>'
    )
