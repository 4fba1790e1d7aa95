"""neighbours.html: hand-built descriptors whose rankings, relevance and skips are known."""

import base64
import io
import re

import numpy as np
from PIL import Image

from universal_embedding.knn import evaluate, neighbours


def _unit(deg):
    r = np.deg2rad(deg)
    return [np.cos(r), np.sin(r)]


# cars: test -> test (self search); inshop: test -> index. inshop index row 0 shares label 0
# with cars queries: it must never count as relevant for them (other domain).
DESCR = {
    "cars/test": np.array([_unit(0), _unit(10), _unit(90), _unit(80)], np.float32),
    "inshop/test": np.array([_unit(0), _unit(90)], np.float32),
    "inshop/index": np.array([_unit(0), _unit(90), _unit(45)], np.float32),
}
LABELS = {
    "cars/test": [(0,), (0,), (1,), (2,)],
    "inshop/test": [(0,), (6, 7)],
    "inshop/index": [(0,), (7,), (8,)],
}
COS10, COS45, COS80 = np.cos(np.deg2rad([10, 45, 80]))


def _evaluation():
    return evaluate.run_evaluation(
        DESCR,
        LABELS,
        domains=["cars", "inshop"],
        separate_knns=["test_knn"],
        merged_knns=["test_knn"],
        k=2,
        backend="numpy",
        keep_neighbours=True,
    )


def _sections(num_queries=10, seed=0):
    found = _evaluation().neighbours
    return neighbours.build_sections(found, LABELS, num_queries=num_queries, seed=seed)


def _section(protocol):
    return next(s for s in _sections() if s.protocol == protocol)


def _summary(row):
    return [(n.key, n.position, n.relevant) for n in row.neighbours]


def test_separate_section_rankings_relevance_and_skips():
    rows = _section("separate").rows
    cars = rows["cars"]
    assert [r.query.position for r in cars] == [0, 1, 2, 3]
    assert _summary(cars[0]) == [("cars/test", 1, True), ("cars/test", 3, False)]
    assert _summary(cars[1]) == [("cars/test", 0, True), ("cars/test", 3, False)]
    assert _summary(cars[2]) == [("cars/test", 3, False), ("cars/test", 1, False)]
    assert [r.n_relevant for r in cars] == [1, 1, 0, 0]
    assert [r.skipped for r in cars] == [False, False, True, True]
    np.testing.assert_allclose([n.score for n in cars[0].neighbours], [COS10, COS80], atol=1e-6)
    inshop = rows["inshop"]
    assert _summary(inshop[0]) == [("inshop/index", 0, True), ("inshop/index", 2, False)]
    assert _summary(inshop[1]) == [("inshop/index", 1, True), ("inshop/index", 2, False)]
    assert inshop[1].neighbours[0].labels == (7,)
    assert [r.n_relevant for r in inshop] == [1, 1]


def test_common_section_searches_merged_index_with_domain_relevance():
    rows = _section("common").rows
    # cars query 0: inshop/index 0 (same vector, same label 0) ranks first but is another domain.
    assert _summary(rows["cars"][0]) == [("inshop/index", 0, False), ("cars/test", 1, True)]
    scores = [n.score for n in rows["cars"][0].neighbours]
    np.testing.assert_allclose(scores, [1.0, COS10], atol=1e-6)
    # inshop query 0: cars/test 0 ties at 1.0 and comes first (lower merged position).
    assert _summary(rows["inshop"][0]) == [("cars/test", 0, False), ("inshop/index", 0, True)]


def test_sections_and_sampling():
    sections = _sections()
    assert [(s.knn_name, s.protocol) for s in sections] == [
        ("test_knn", "separate"),
        ("test_knn", "common"),
    ]
    a = _sections(num_queries=2, seed=3)
    b = _sections(num_queries=2, seed=3)
    picked = [[r.query.position for r in s.rows["cars"]] for s in a]
    assert len(picked[0]) == 2 and picked[0] == picked[1]  # same queries in both protocols
    assert picked == [[r.query.position for r in s.rows["cars"]] for s in b]
    assert all(len(s.rows["inshop"]) == 2 for s in a)


def test_marks_agree_with_results():
    out = _evaluation()
    for s in _sections():
        for domain, rows in s.rows.items():
            scored = [r for r in rows if not r.skipped]
            top1 = np.mean([r.neighbours[0].relevant for r in scored])
            assert top1 == out.results[f"{domain}:{s.protocol}:test_knn:top_1"]
            skipped = len(rows) - len(scored)
            assert skipped == out.results[f"{domain}:{s.protocol}:test_knn:skipped_queries"]


def _png(color, size=(40, 20)):
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def test_thumbnail_uri_is_a_jpeg_within_size():
    uri = neighbours.thumbnail_uri(_png((255, 0, 0), (300, 100)), 64)
    assert uri.startswith("data:image/jpeg;base64,")
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as im:
        assert im.format == "JPEG" and im.size == (64, 21)
        assert im.getpixel((30, 10))[0] > 200
    assert neighbours.thumbnail_uri(b"not an image", 64) is None
    assert neighbours.thumbnail_uri(None, 64) is None


def test_html_thumbnails_marks_and_missing_images(tmp_path):
    sections = _sections()
    calls = []

    def loader(key, positions):
        calls.append((key, tuple(positions)))
        gone = key == "inshop/index"
        return {p: (None if gone and p == 2 else _png((0, 0, 255))) for p in positions}

    paths = {key: [f"{key}/img{i}.jpg" for i in range(len(v))] for key, v in LABELS.items()}
    path = neighbours.write_neighbours_html(
        str(tmp_path / "n.html"), sections, loader, paths, k=2, thumb_size=32
    )
    page = open(path, encoding="utf-8").read()
    rows = re.findall(r"<tr[^>]*>.*?</tr>", page)
    assert len(rows) == 2 * (4 + 2)
    # every row: 1 query + k=2 neighbour cells; inshop/index #2 has no image.
    missing = sum(r.count('class="missing"') for r in rows)
    assert page.count("<img ") + missing == 2 * 6 * 3
    assert missing == page.count("inshop/index #2")
    assert missing == 2  # separate protocol: both inshop queries retrieve it second
    # each split loaded once, positions sorted and unique
    assert len(calls) == len({c[0] for c in calls}) == 3
    assert page.count('data-skipped="1"') == 2 * 2
    marks = [int(m) for m in re.findall(r'data-relevant="(\d)"', page)]
    rows_in_order = [r for s in sections for rs in s.rows.values() for r in rs]
    expected = [int(n.relevant) for r in rows_in_order for n in r.neighbours]
    assert marks == expected and sum(marks) == 4 + 4
    assert "cars: 4 sampled queries, top-1 relevant 2/2" in page
    assert "sim 0.985" in page and "class 6,7" in page
    assert page.count('title="inshop/test/img1.jpg"') == 2  # the query, in both sections
