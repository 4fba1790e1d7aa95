"""neighbours.html: the gallery page(s) of sampled queries and their top-k neighbours.

One table per kNN setup and domain; each query is one row with its separate-index and
common-index neighbours side by side, each protocol with the query's mP@k, AP@k and the rank
of its first relevant neighbour. Every neighbour cell carries its relevance as a mark in text
(check / cross), as data attributes and as colour plus border style. Each distinct image is
embedded once per page (a JSON block of JPEG data: URIs that the script attaches), and pages
hold at most `per_page` queries: neighbours.html, neighbours_2.html, ...
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from universal_embedding.report import gallery_assets
from universal_embedding.report.gallery_cells import PROTOCOL_TITLES, PageContext, esc, query_row
from universal_embedding.report.neighbour_rows import (
    ImageLoader,
    Item,
    OriginalFiles,
    QueryGroup,
    Section,
    Thumb,
    group_queries,
    thumbnail,
)


def page_names(n_pages: int, stem: str = "neighbours") -> list[str]:
    """File names of the pages: stem.html, stem_2.html, ..."""
    return [f"{stem}.html" if i == 0 else f"{stem}_{i + 1}.html" for i in range(n_pages)]


def paginate(groups: Sequence[QueryGroup], per_page: int) -> list[list[QueryGroup]]:
    """Consecutive chunks of at most `per_page` queries (at least one page)."""
    if per_page < 1:
        raise ValueError(f"neighbours_per_page must be >= 1, got {per_page}.")
    return [list(groups[i : i + per_page]) for i in range(0, len(groups), per_page)] or [[]]


def load_thumbs(
    groups: Sequence[QueryGroup], loader: ImageLoader, size: int
) -> dict[tuple[str, int], Thumb | None]:
    """A thumbnail of every image the groups show; the loader is called once per split."""
    wanted: dict[str, set[int]] = {}
    for g in groups:
        for item in _items(g):
            wanted.setdefault(item.key, set()).add(item.position)
    return {
        (key, p): thumbnail(data, size)
        for key, pos in wanted.items()
        for p, data in loader(key, sorted(pos)).items()
    }


def _items(g: QueryGroup) -> list[Item]:
    return [g.query, *(nb for r in g.by_protocol.values() for nb in r.neighbours)]


def _summaries(groups: Sequence[QueryGroup]) -> dict[tuple[str, str], str]:
    """Per (kNN setup, domain): sampled and skipped queries, top-1 hits per protocol."""
    by: dict[tuple[str, str], list[QueryGroup]] = {}
    for g in groups:
        by.setdefault((g.knn_name, g.domain), []).append(g)
    out = {}
    for key, gs in by.items():
        scored = [g for g in gs if not g.skipped]
        hits = []
        for p in PROTOCOL_TITLES:
            rows = [g.by_protocol[p] for g in scored if p in g.by_protocol]
            if any(p in g.by_protocol for g in gs):
                hits.append(f"{p} {sum(not r.failure for r in rows)}/{len(rows)}")
        skipped = f", {len(gs) - len(scored)} skipped" if len(scored) < len(gs) else ""
        out[key] = f"{len(gs)} sampled queries{skipped}; top-1 ✓ {', '.join(hits)}"
    return out


def _anchor(knn: str, domain: str) -> str:
    return f"{knn}-{domain}"


def _toc(pages: Sequence[Sequence[QueryGroup]], names: Sequence[str], summaries) -> str:
    first_page: dict[tuple[str, str], int] = {}
    for i, gs in enumerate(pages):
        for g in gs:
            first_page.setdefault((g.knn_name, g.domain), i)
    knns = list(dict.fromkeys(knn for knn, _ in first_page))
    parts = ['<nav class="toc" id="contents" aria-label="Contents"><h2>Contents</h2>']
    for knn in knns:
        items = []
        for (kn, domain), i in first_page.items():
            if kn == knn:
                where = f" (page {i + 1})" if len(pages) > 1 else ""
                href = f"{names[i]}#{_anchor(kn, domain)}"
                items.append(
                    f'<li><a href="{esc(href)}">{esc(domain)}</a>{where}: '
                    f"{esc(summaries[kn, domain])}</li>"
                )
        parts.append(f"<p><strong>{esc(knn)}</strong></p><ul>{''.join(items)}</ul>")
    return "".join(parts) + "</nav>"


def _pager(names: Sequence[str], current: int) -> str:
    if len(names) < 2:
        return ""
    here = ' aria-current="page"'
    links = [
        f'<a href="{esc(n)}"{here if i == current else ""}>{i + 1}</a>' for i, n in enumerate(names)
    ]
    return f'<p class="pages">Page {current + 1} of {len(names)}: {" ".join(links)}</p>'


def _checkboxes(name: str, legend: str, values: Sequence[str]) -> str:
    boxes = "".join(
        f'<label><input type="checkbox" name="{name}" value="{esc(v)}" checked> {esc(v)}</label>'
        for v in values
    )
    return f"<fieldset><legend>{legend}</legend>{boxes}</fieldset>"


def _controls(groups: Sequence[QueryGroup]) -> str:
    domains = list(dict.fromkeys(g.domain for g in groups))
    knns = list(dict.fromkeys(g.knn_name for g in groups))
    protocols = [p for p in PROTOCOL_TITLES if any(p in g.by_protocol for g in groups)]
    sorts = '<option value="order">sampled order</option>' + "".join(
        f'<option value="{p}:{how}">{p}: first ✓ rank, {how} first</option>'
        for p in protocols
        for how in ("worst", "best")
    )
    return (
        '<form id="filters" class="controls" aria-label="Filters (this page)">'
        + _checkboxes("domain", "Domain", domains)
        + (_checkboxes("knn", "kNN setup", knns) if len(knns) > 1 else "")
        + _checkboxes("protocol", "Index", protocols)
        + '<label><input type="checkbox" name="failures"> failures only (top 1 not relevant)'
        + f'</label><label>Sort <select name="sort">{sorts}</select></label>'
        + '<output id="status" class="status" aria-live="polite"></output></form>'
    )


def _legend(k: int) -> str:
    return (
        '<p class="legend"><span class="chip rel">✓ relevant</span> same domain and a shared '
        'class, exactly as the metrics count it (solid blue border); <span class="chip nonrel">'
        "✗ not relevant</span> (dashed orange border). Each row shows one query with its "
        f"neighbours in its own domain's index (separate) and in all domains' (common); mP@{k} "
        f"and AP@{k} are the query's terms of mMP@{k} and mAP@{k}. Queries without any relevant "
        "index image are skipped by the metrics (grey). The dark badge is the domain; an "
        "outlined badge marks a neighbour from another domain. Select an image to open the "
        "original file when it is on disk.</p>"
    )


def _domain_table(
    gs: Sequence[QueryGroup], start: int, total: int, summary: str, page: PageContext
) -> str:
    g0 = gs[0]
    anchor = _anchor(g0.knn_name, g0.domain)
    span = f" Queries {start + 1}–{start + len(gs)} of {total}." if len(gs) < total else ""
    heads = "".join(
        f'<th scope="col" data-protocol="{p}">{PROTOCOL_TITLES[p]}: top {page.k}</th>'
        for p in PROTOCOL_TITLES
        if p in g0.by_protocol
    )
    rows = "".join(query_row(g, start + i, page) for i, g in enumerate(gs))
    return (
        f'<section class="domain" id="{esc(anchor)}" data-domain="{esc(g0.domain)}" '
        f'data-knn="{esc(g0.knn_name)}"><h2>{esc(g0.domain)} · {esc(g0.knn_name)}'
        f'<a class="top" href="#contents">↑ contents</a></h2><p>{esc(summary)}.{span}</p>'
        f'<table><thead><tr><th scope="col">Query</th>{heads}</tr></thead>'
        f"<tbody>{rows}</tbody></table></section>"
    )


def render_page(
    pages: Sequence[Sequence[QueryGroup]],
    current: int,
    names: Sequence[str],
    page: PageContext,
    *,
    title: str = "Nearest neighbours",
) -> str:
    """One page of the gallery: header, contents, filters, its domain tables and thumbnails."""
    summaries = _summaries([g for gs in pages for g in gs])
    totals: dict[tuple[str, str], int] = {}
    starts: dict[tuple[str, str], int] = {}
    tables = []
    for i, gs in enumerate(pages):
        by: dict[tuple[str, str], list[QueryGroup]] = {}
        for g in gs:
            by.setdefault((g.knn_name, g.domain), []).append(g)
        for key, chunk in by.items():
            start = totals.get(key, 0)
            totals[key] = start + len(chunk)
            if i == current:
                starts[key] = start
                tables.append((key, chunk))
    body = [
        _domain_table(chunk, starts[key], totals[key], summaries[key], page)
        for key, chunk in tables
    ]
    head = f"{title} (page {current + 1} of {len(pages)})" if len(pages) > 1 else title
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(head)}</title><style>{gallery_assets.CSS}</style></head><body>"
        f"<header><h1>{esc(head)}</h1>{_legend(page.k)}{_pager(names, current)}"
        f"{_toc(pages, names, summaries)}{_controls(pages[current])}</header>"
        f"<main>{''.join(body)}</main>{_pager(names, current)}"
        "<noscript><p>The thumbnails, filters and sorting need JavaScript; the marks and "
        "figures above do not.</p></noscript>"
        f'<script type="application/json" id="thumbs">{page.thumbs_json()}</script>'
        f"<script>{gallery_assets.JS}</script></body></html>"
    )


def write_gallery(
    out_dir: str,
    sections: Sequence[Section],
    loader: ImageLoader,
    paths: Mapping[str, Sequence[str]],
    *,
    k: int,
    thumb_size: int = 96,
    per_page: int = 200,
    originals: OriginalFiles | None = None,
) -> list[str]:
    """Write out_dir/neighbours.html (+ neighbours_2.html, ... past `per_page` queries).

    Returns the page paths. Pages of an earlier, longer gallery in out_dir are removed.
    """
    groups = group_queries(sections)
    thumbs = load_thumbs(groups, loader, thumb_size)
    pages = paginate(groups, per_page)
    names = page_names(len(pages))
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for i in range(len(pages)):
        page = PageContext(thumbs, paths, originals, os.path.abspath(out_dir), k)
        path = os.path.join(out_dir, names[i])
        with open(path, "w", encoding="utf-8") as f:
            f.write(render_page(pages, i, names, page))
        written.append(path)
    stale = len(pages) + 1
    while os.path.isfile(old := os.path.join(out_dir, page_names(stale)[-1])):
        os.remove(old)
        stale += 1
    return written
