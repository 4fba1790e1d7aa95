"""neighbours.html data: hand-built descriptors whose rankings, relevance and skips are known."""

import base64
import io

import numpy as np
from PIL import Image

from universal_embedding.knn import evaluate
from universal_embedding.report import neighbour_rows


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
    return neighbour_rows.build_sections(found, LABELS, num_queries=num_queries, seed=seed)


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


def test_thumbnail_is_a_jpeg_within_size():
    thumb = neighbour_rows.thumbnail(_png((255, 0, 0), (300, 100)), 64)
    assert thumb.uri.startswith("data:image/jpeg;base64,")
    assert (thumb.width, thumb.height) == (64, 21)
    with Image.open(io.BytesIO(base64.b64decode(thumb.uri.split(",", 1)[1]))) as im:
        assert im.format == "JPEG" and im.size == (64, 21)
        assert im.getpixel((30, 10))[0] > 200
    small = neighbour_rows.thumbnail(_png((0, 0, 255), (30, 20)), 64)
    assert (small.width, small.height) == (30, 20)  # never enlarged
    assert neighbour_rows.thumbnail_uri(_png((0, 0, 255), (30, 20)), 64) == small.uri
    assert neighbour_rows.thumbnail_uri(b"not an image", 64) is None
    assert neighbour_rows.thumbnail_uri(None, 64) is None


def test_per_query_scores_first_relevant_and_failures():
    rows = {p: _section(p).rows for p in ("separate", "common")}
    # cars query 0, common: not relevant then relevant, n_q = 1 -> mP@2 = 0/1, AP@2 = (1/2)/1.
    r = rows["common"]["cars"][0]
    assert r.scores(2) == {"top_1": 0.0, "mp_2": 0.0, "map_2": 0.5}
    assert r.first_relevant == 2 and r.failure
    r = rows["separate"]["cars"][0]
    assert r.scores(2) == {"top_1": 1.0, "mp_2": 1.0, "map_2": 1.0}
    assert r.first_relevant == 1 and not r.failure
    # skipped queries are never failures (the metrics leave them out)
    r = rows["separate"]["cars"][2]
    assert r.skipped and not r.failure and r.first_relevant is None
    # inshop query 0, common: cars/test 0 first (other domain), own index image second.
    assert rows["common"]["inshop"][0].first_relevant == 2


def test_group_queries_puts_protocols_side_by_side():
    groups = neighbour_rows.group_queries(_sections())
    assert [(g.domain, g.query.position) for g in groups] == [
        ("cars", 0), ("cars", 1), ("cars", 2), ("cars", 3), ("inshop", 0), ("inshop", 1),
    ]  # fmt: skip
    for g in groups:
        assert list(g.by_protocol) == ["separate", "common"]
        assert all(r.query == g.query for r in g.by_protocol.values())
    assert [g.skipped for g in groups] == [False, False, True, True, False, False]
    common = neighbour_rows.group_queries([_section("common")])
    assert all(list(g.by_protocol) == ["common"] for g in common)
