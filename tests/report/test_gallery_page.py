"""neighbours.html pages parsed with html.parser: marks, filters, images once, paging, size."""

import io
import json
import os
import urllib.parse

import numpy as np
import pytest
from PIL import Image

from tests.html_tree import parse_html
from universal_embedding.data import registry
from universal_embedding.data.synthetic import FAMILIES
from universal_embedding.data.synthetic_render import ClassSpec, render
from universal_embedding.knn import evaluate
from universal_embedding.report import gallery_page, neighbour_rows

# Same hand-built case as test_neighbour_rows.py: cars self-search (queries 2 and 3 skipped),
# inshop test -> index; in the common index cars query 0 finds inshop/index 0 first.
DESCR = {
    "cars/test": np.array([[1, 0], [0.985, 0.174], [0, 1], [0.174, 0.985]], np.float32),
    "inshop/test": np.array([[1, 0], [0, 1]], np.float32),
    "inshop/index": np.array([[1, 0], [0, 1], [0.707, 0.707]], np.float32),
}
LABELS = {
    "cars/test": [(0,), (0,), (1,), (2,)],
    "inshop/test": [(0,), (6, 7)],
    "inshop/index": [(0,), (7,), (8,)],
}
PATHS = {key: [f"{key}/c#{i}/img {i}.jpg" for i in range(len(v))] for key, v in LABELS.items()}
K = 2


def _sections():
    found = evaluate.run_evaluation(
        DESCR, LABELS, domains=["cars", "inshop"], separate_knns=["test_knn"],
        merged_knns=["test_knn"], k=K, backend="numpy", keep_neighbours=True,
    ).neighbours  # fmt: skip
    return neighbour_rows.build_sections(found, LABELS, num_queries=10)


def _jpeg(rgb, size=(40, 30)):
    buf = io.BytesIO()
    Image.new("RGB", size, tuple(int(c) for c in rgb)).save(buf, format="JPEG")
    return buf.getvalue()


class Loader:
    """Distinct colour per image; inshop/index #2 unreadable. Records its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, key, positions):
        self.calls.append((key, tuple(positions)))
        base = {"cars/test": 0, "inshop/test": 80, "inshop/index": 160}[key]
        return {p: None if key == "inshop/index" and p == 2 else _jpeg((base + 20 * p, 90, 40))
                for p in positions}  # fmt: skip


def _write(tmp_path, per_page=200, originals=None, sections=None):
    loader = Loader()
    written = gallery_page.write_gallery(
        str(tmp_path), sections or _sections(), loader, PATHS, k=K, thumb_size=32,
        per_page=per_page, originals=originals,
    )  # fmt: skip
    return written, loader


def _read(path):
    with open(path, encoding="utf-8") as f:
        return parse_html(f.read())


def test_page_is_accessible_html(tmp_path):
    (path,), _ = _write(tmp_path)
    doc = _read(path)
    assert doc.attrs["doctype"].lower() == "doctype html"
    assert doc.find("html").attrs["lang"] == "en"
    viewport = doc.find("meta", name="viewport").attrs["content"]
    assert "width=device-width" in viewport
    imgs = doc.find_all("img")
    assert imgs and all(img.attrs.get("alt", "").strip() for img in imgs)
    assert all(img.attrs["width"] and img.attrs["height"] for img in imgs)
    tables = doc.find_all("table")
    assert len(tables) == 2  # cars and inshop
    for table in tables:
        heads = [th.text() for th in table.find("thead").find_all("th", scope="col")]
        assert heads == ["Query", "Separate index: top 2", "Common index: top 2"]
        rows = table.find_all("tr", class_="qrow")
        assert rows and all(len(r.find_all("th", scope="row")) == 1 for r in rows)
    missing = doc.find_all(class_="missing")  # inshop/index #2 in both protocols
    assert len(missing) == 2 and all(m.attrs["role"] == "img" for m in missing)
    assert all("inshop/index/c#2/img 2.jpg" in m.attrs["aria-label"] for m in missing)


def test_each_distinct_image_is_embedded_once(tmp_path):
    (path,), loader = _write(tmp_path)
    with open(path, encoding="utf-8") as f:
        page = f.read()
    doc = parse_html(page)
    thumbs = json.loads(doc.find("script", id="thumbs").text())
    imgs = doc.find_all("img")
    assert not any("src" in img.attrs for img in imgs)  # attached by the script, from the map
    shown = {img.attrs["data-thumb"] for img in imgs}
    assert shown == set(thumbs)
    assert len(set(thumbs.values())) == len(thumbs)  # no image stored twice
    assert page.count("data:image/") == len(thumbs)
    # every image of every split is shown (6 queries' neighbours cover them), the unreadable
    # one excepted; each split is loaded once with sorted, unique positions
    assert len(thumbs) == sum(map(len, LABELS.values())) - 1
    assert len(imgs) > len(thumbs)  # images repeat across cells, never in the page
    assert sorted(c[0] for c in loader.calls) == sorted(LABELS)
    assert all(list(pos) == sorted(set(pos)) for _, pos in loader.calls)


def _cells(doc):
    return [
        (row, td, li)
        for row in doc.find_all("tr", class_="qrow")
        for td in row.find_all("td")
        for li in td.find_all("li")
    ]


def test_every_cell_carries_its_mark_as_text_and_data(tmp_path):
    (path,), _ = _write(tmp_path)
    doc = _read(path)
    cells = _cells(doc)
    assert len(cells) == 2 * 6 * K  # two protocols, six queries, k neighbours
    groups = neighbour_rows.group_queries(_sections())
    expected = [
        (g.domain, p, rank, nb)
        for g in groups
        for p, r in g.by_protocol.items()
        for rank, nb in enumerate(r.neighbours, 1)
    ]
    for (row, td, li), (domain, protocol, rank, nb) in zip(cells, expected, strict=True):
        assert row.attrs["data-domain"] == domain and td.attrs["data-protocol"] == protocol
        assert li.attrs["data-rank"] == str(rank)
        assert li.attrs["data-relevant"] == str(int(nb.relevant))
        assert li.attrs["data-domain"] == nb.domain
        mark = li.find("span", class_="mark").text()
        assert mark == ("✓ relevant" if nb.relevant else "✗ not relevant")
        assert ("rel" if nb.relevant else "nonrel") in li.attrs["class"].split()
        badge = li.find("span", class_="badge")
        assert badge.text() == nb.domain
        assert ("other" in badge.attrs["class"].split()) == (nb.domain != domain)
    assert sum(li.attrs["data-relevant"] == "1" for _, _, li in cells) == 4 + 4
    # cars query 0 retrieves inshop/index 0 (same label 0, other domain) first in common
    li = cells[2][2]
    assert li.attrs["data-domain"] == "inshop" and li.attrs["data-relevant"] == "0"
    assert "inshop" in li.text() and "class 0" in li.text()


def test_filter_and_sort_attributes(tmp_path):
    (path,), _ = _write(tmp_path)
    doc = _read(path)
    form = doc.find("form", id="filters")

    def values(name):
        return [i.attrs["value"] for i in form.find_all("input", name=name)]

    assert values("domain") == ["cars", "inshop"] and values("protocol") == ["separate", "common"]
    assert values("knn") == []  # one kNN setup: no knn filter
    assert form.find_all("input", name="failures")
    sorts = [o.attrs["value"] for o in form.find_all("option")]
    assert sorts == ["order", "separate:worst", "separate:best", "common:worst", "common:best"]
    rows = doc.find_all("tr", class_="qrow")
    got = []
    for row in rows:
        tds = {td.attrs["data-protocol"]: td for td in row.find_all("td")}
        assert set(tds) == {"separate", "common"}
        got.append(
            (row.attrs["data-domain"], row.attrs["data-skipped"], row.attrs["data-failure"],
             *((tds[p].attrs["data-failure"], tds[p].attrs["data-first-relevant"])
               for p in ("separate", "common")))
        )  # fmt: skip
    assert got == [  # (domain, skipped, any failure, (failure, first relevant) per protocol)
        ("cars", "0", "1", ("0", "1"), ("1", "2")),
        ("cars", "0", "0", ("0", "1"), ("0", "1")),
        ("cars", "1", "0", ("0", "0"), ("0", "0")),
        ("cars", "1", "0", ("0", "0"), ("0", "0")),
        ("inshop", "0", "1", ("0", "1"), ("1", "2")),
        ("inshop", "0", "1", ("0", "1"), ("1", "2")),
    ]
    assert [r.attrs["data-order"] for r in rows] == ["0", "1", "2", "3", "0", "1"]
    stats = rows[0].find("td", data_protocol="common").find("p", class_="stats").text()
    assert stats == "common · mP@2 0.00 · AP@2 0.50 · first ✓ at rank 2"
    stats = rows[2].find("td", data_protocol="separate").find("p", class_="stats").text()
    assert stats == "separate · skipped: no relevant image in this index"
    summary = doc.find("section", id="test_knn-cars").find("p").text()
    assert summary == "4 sampled queries, 2 skipped; top-1 ✓ separate 2/2, common 1/2."


def test_links_to_the_original_files(tmp_path):
    images = tmp_path / "images"

    def originals(key, p):  # only cars images are on disk
        return str(images / PATHS[key][p]) if key == "cars/test" else None

    (path,), _ = _write(tmp_path / "w", originals=originals)
    doc = _read(path)
    links = doc.find_all("a", title="open the original")
    hrefs = {a.attrs["href"] for a in links}
    assert hrefs == {f"../images/cars/test/c%23{i}/img%20{i}.jpg" for i in range(4)}
    for a in links:
        rel = urllib.parse.unquote(a.attrs["href"]).removeprefix("../images/")
        assert a.find("img").attrs["alt"].endswith(": " + rel)
    inshop_imgs = [i for i in doc.find_all("img") if "inshop/" in i.attrs["alt"]]
    assert inshop_imgs and len(links) == len(doc.find_all("img")) - len(inshop_imgs)


def test_pages_cap_queries_and_link_each_other(tmp_path):
    written, loader = _write(tmp_path, per_page=1)
    assert [os.path.basename(p) for p in written] == gallery_page.page_names(6)
    assert gallery_page.page_names(3) == [
        "neighbours.html",
        "neighbours_2.html",
        "neighbours_3.html",
    ]
    written, loader = _write(tmp_path, per_page=4)
    assert [os.path.basename(p) for p in written] == ["neighbours.html", "neighbours_2.html"]
    assert sorted(os.listdir(tmp_path)) == ["neighbours.html", "neighbours_2.html"]  # stale gone
    assert len(loader.calls) == 3  # images loaded once for all pages
    first, second = (_read(p) for p in written)
    assert len(first.find_all("tr", class_="qrow")) == 4
    assert len(second.find_all("tr", class_="qrow")) == 2
    for doc in (first, second):
        toc = [a.attrs["href"] for a in doc.find("nav", id="contents").find_all("a")]
        assert toc == ["neighbours.html#test_knn-cars", "neighbours_2.html#test_knn-inshop"]
        pager = [a.attrs["href"] for a in doc.find("p", class_="pages").find_all("a")]
        assert pager == ["neighbours.html", "neighbours_2.html"]
    # each page embeds only its own images
    for doc in (first, second):
        thumbs = json.loads(doc.find("script", id="thumbs").text())
        assert {i.attrs["data-thumb"] for i in doc.find_all("img")} == set(thumbs)
    assert [i.attrs["value"] for i in second.find_all("input", name="domain")] == ["inshop"]
    with pytest.raises(ValueError, match="neighbours_per_page"):
        gallery_page.paginate([], 0)


def test_one_query_split_over_pages_says_which_part(tmp_path):
    written, _ = _write(tmp_path, per_page=3)
    first, second = (_read(p) for p in written[:2])
    assert "Queries 1–3 of 4." in first.find("section", id="test_knn-cars").find("p").text()
    assert "Queries 4–4 of 4." in second.find("section", id="test_knn-cars").find("p").text()
    orders = [r.attrs["data-order"] for r in second.find_all("tr", class_="qrow")]
    assert orders == ["3", "0", "1"]  # cars continues at its 4th query, then inshop


# ---------------------------------------------------------------- benchmark-scale size

QUERIES, INDEX = 50, 96  # per domain: 50 sampled queries among the synthetic test split's 96


def _synthetic_pool(domain: str, rng) -> list[bytes]:
    """INDEX JPEGs like the synthetic data's (64-96 px, quality 70-95): a few rendered
    objects, each shifted, flipped and re-coloured into distinct images."""
    style = registry.get_domain(domain).id
    specs = [
        ClassSpec(shape=str(rng.choice(FAMILIES[domain])), tex=i % 5, freq=3.0, tex_angle=0.5 * i,
                  colour_a=i, colour_b=(i + 3) % 10, mark=(0.2, -0.2, 0.3), colour_mark=9 - i,
                  angle=0.1 * i)
        for i in range(8)
    ]  # fmt: skip
    base = [render(rng, style, [s], 96, 96) for s in specs]
    out = []
    for i in range(INDEX):
        img = np.roll(base[i % 8], int(rng.integers(-20, 20)), axis=int(rng.integers(0, 2)))
        img = img[:, ::-1] if i % 2 else img
        h, w = (int(v) for v in rng.integers(64, 97, 2))
        img = np.clip(img[:h, :w] * rng.uniform(0.8, 1.2, 3), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=int(rng.integers(70, 96)))
        out.append(buf.getvalue())
    return out


def test_benchmark_scale_gallery_stays_small(tmp_path):
    """8 domains x 50 queries x top-5 in both protocols stays under 8 MB in all."""
    rng = np.random.default_rng(0)
    domains = registry.DOMAIN_NAMES
    pools = {f"{d}/test": _synthetic_pool(d, rng) for d in domains}
    rows: dict[str, dict[str, tuple]] = {"separate": {}, "common": {}}
    for d in domains:
        key = f"{d}/test"
        for protocol in rows:
            picked = []
            for q in range(QUERIES):
                ids = rng.choice([i for i in range(INDEX) if i != q], 5, replace=False)
                nbs = [neighbour_rows.Item(key, int(i), (int(i) % 16,), 0.9, i % 16 == q % 16)
                       for i in ids]  # fmt: skip
                if protocol == "common":  # one neighbour from another domain's index
                    other = f"{domains[(domains.index(d) + 1) % 8]}/test"
                    nbs[4] = neighbour_rows.Item(other, int(rng.integers(INDEX)), (0,), 0.5, False)
                query = neighbour_rows.Item(key, q, (q % 16,))
                picked.append(neighbour_rows.QueryRow(query, 5, tuple(nbs)))
            rows[protocol][d] = tuple(picked)
    sections = [neighbour_rows.Section("test_knn", p, r) for p, r in rows.items()]
    paths = {key: [f"{key}/{i:03d}.jpg" for i in range(INDEX)] for key in pools}

    def loader(key, positions):
        return {p: pools[key][p] for p in positions}

    written = gallery_page.write_gallery(
        str(tmp_path), sections, loader, paths, k=5, thumb_size=96, per_page=200
    )
    assert len(written) == 2  # 400 queries, 200 per page
    total = sum(os.path.getsize(p) for p in written)
    assert total < 8_000_000, f"{total / 1e6:.1f} MB for {8 * QUERIES} queries"
    rows = cells = 0
    for path in written:  # string checks: html.parser takes seconds on pages this size
        with open(path, encoding="utf-8") as f:
            page = f.read()
        start = page.index('<script type="application/json" id="thumbs">') + 44
        thumbs = json.loads(page[start : page.index("</script>", start)])
        assert len(set(thumbs.values())) == len(thumbs) == page.count("data:image/jpeg")
        rows += page.count('<tr class="qrow')
        cells += page.count('<li class="cell nb ')
    assert rows == 8 * QUERIES and cells == 10 * rows


def test_report_pages_import_without_tensorflow_or_train():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from universal_embedding.report import (\n"
        "    gallery_images, gallery_page, neighbour_rows, results_files, results_page, table)\n"
        "bad = [m for m in sys.modules\n"
        "       if m == 'tensorflow' or m.startswith('universal_embedding.train')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.getcwd())
