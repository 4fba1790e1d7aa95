"""The page of `index query --html`: each query with its nearest indexed images, in the style of
neighbours.html (report/gallery_assets.py's style sheet, the same query and neighbour cells).

One row per query: its thumbnail and its path relative to the folder it was found in, then its
top-k neighbours, best first, each with its rank, similarity and indexed path. A saved index
holds no labels, so cells carry no relevance mark. Thumbnails are inlined as data: URIs: the
page needs no script and no other file. Files over MAX_FILE_BYTES, or that do not decode as
images, show "image unavailable"; indexed paths are read only inside the images folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from universal_embedding.data import image_files
from universal_embedding.report import gallery_assets
from universal_embedding.report.gallery_cells import esc
from universal_embedding.report.neighbour_rows import Thumb, thumbnail

MAX_FILE_BYTES = 64 << 20  # larger files are not read for a thumbnail


def read_thumb(path: str, size: int) -> Thumb | None:
    """A thumbnail of the image file at `path`, or None (missing, too large, undecodable)."""
    try:  # read_image_file checks existence, file type, size and header before reading
        return thumbnail(image_files.read_image_file(path, MAX_FILE_BYTES), size)
    except (OSError, image_files.BadImageError):
        return None


def indexed_thumb(path: str, images_dir: str, size: int) -> Thumb | None:
    """The thumbnail of an indexed path (a name read from the index's paths.bin): only inside
    images_dir, never by `..` or an absolute name or a link leading out; None without a folder."""
    if not images_dir or image_files.outside_dir(images_dir, [path]):
        return None
    return read_thumb(os.path.join(images_dir, path), size)


def resolve(path: str, base: str) -> str:
    """`path` under `base` unless it is absolute or there is no base."""
    return path if os.path.isabs(path) or not base else os.path.join(base, path)


def _image(thumb: Thumb | None, alt: str) -> str:
    if thumb is None:
        label = esc(f"{alt} (image unavailable)")
        return f'<span class="missing" role="img" aria-label="{label}">image unavailable</span>'
    return f'<img src="{thumb.uri}" alt="{esc(alt)}" width="{thumb.width}" height="{thumb.height}">'


def _breakable(path: str) -> str:
    return esc(path).replace("/", "/<wbr>")


def query_cell(label: str, thumb: Thumb | None) -> str:
    """The row header: the query's thumbnail and its relative path."""
    return (
        f'<th scope="row"><span class="cell query">{_image(thumb, f"query: {label}")}'
        f'<strong>query</strong><br><span class="path">{_breakable(label)}</span></span></th>'
    )


def neighbour_cell(rank: int, path: str, score: float, thumb: Thumb | None) -> str:
    """One neighbour: thumbnail, rank, similarity and indexed path."""
    return (
        f'<li class="cell nb" data-rank="{rank}">{_image(thumb, f"rank {rank}: {path}")}'
        f'#{rank} · sim {score:.3f}<br><span class="path">{_breakable(path)}</span></li>'
    )


def render(
    results: Sequence[Mapping],
    thumbs: Mapping[tuple[str, str], Thumb | None],
    *,
    k: int,
    title: str = "Index query results",
    note: str = "",
) -> str:
    """The page. results: [{'query', 'label', 'neighbours': [{'path', 'score'}]}]; thumbs:
    {('query' | 'index', path): thumbnail or None}."""
    rows = []
    for r in results:
        label = r.get("label") or r["query"]
        nbs = "".join(
            neighbour_cell(rank, n["path"], n["score"], thumbs.get(("index", n["path"])))
            for rank, n in enumerate(r["neighbours"], 1)
        )
        cells = f'<td><ol class="nbs">{nbs}</ol></td>'
        rows.append(
            f'<tr class="qrow">{query_cell(label, thumbs.get(("query", r["query"])))}{cells}</tr>'
        )
    n = len(results)
    summary = f"{n} {'query' if n == 1 else 'queries'}, top {k} neighbours each, best first"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{gallery_assets.CSS}</style></head><body>"
        f'<header><h1>{esc(title)}</h1><p class="legend">{esc(summary)}; sim: cosine '
        f"similarity of the embeddings.{' ' + esc(note) if note else ''}</p></header><main>"
        '<table><thead><tr><th scope="col">Query</th><th scope="col">Nearest indexed images'
        f"</th></tr></thead><tbody>{''.join(rows)}</tbody></table></main></body></html>"
    )


def write(
    path: str,
    results: Sequence[Mapping],
    images_dir: str = "",
    queries_dir: str = "",
    *,
    k: int,
    thumb_size: int = 96,
    note: str = "",
) -> str:
    """Write the page to `path`: neighbours' images under images_dir (the indexed paths'
    folder), queries' under queries_dir ('' = as given); returns `path`."""
    thumbs: dict[tuple[str, str], Thumb | None] = {}
    for r in results:
        wanted = [("query", r["query"], queries_dir)]
        wanted += [("index", n["path"], images_dir) for n in r["neighbours"]]
        for role, p, base in wanted:
            if (role, p) in thumbs:
                continue
            if role == "index":
                thumbs[role, p] = indexed_thumb(p, base, thumb_size)
            else:  # a query is the user's own file
                thumbs[role, p] = read_thumb(resolve(p, base), thumb_size)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(render(results, thumbs, k=k, note=note))
    return path
