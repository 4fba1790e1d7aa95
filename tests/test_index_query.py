"""`index query`: by --descriptors (no model), queries labelled by their relative path, and the
gallery page in the neighbour gallery's style (report/index_gallery.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

from tests.html_tree import parse_html
from universal_embedding import index
from universal_embedding.knn import saved_index
from universal_embedding.report import gallery_assets

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def image_folder(root, names) -> str:
    """root/<name> as 8x8 PNG files of distinct colours; returns root."""
    for i, name in enumerate(names):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8), (30 * i, 100, 200)).save(path)
    return str(root)


def indexed(tmp_path, n: int = 6, d: int = 4):
    """An index of n unit rows with paths 'c<i % 2>/<i>.png' (images written), and the rows."""
    x = unit_rows(n, d)
    names = [f"c{i % 2}/{i}.png" for i in range(n)]
    images = image_folder(tmp_path / "images", names)
    out = str(tmp_path / "ix")
    saved_index.build(x, names, out, extra_meta={"images_dir": images})
    return out, x, names


def test_query_by_descriptors_finds_each_row_first_labelled_by_its_path(tmp_path):
    out, x, names = indexed(tmp_path)
    np.savez(tmp_path / "q.npz", descriptors=x[[4, 1]], paths=np.array(["a/q4.png", "b/q1.png"]))
    results = index.query_descriptors(out, str(tmp_path / "q.npz"), k=2)
    assert [r["label"] for r in results] == ["a/q4.png", "b/q1.png"]
    assert [r["neighbours"][0]["path"] for r in results] == [names[4], names[1]]
    np.testing.assert_allclose([r["neighbours"][0]["score"] for r in results], 1.0, atol=1e-6)
    np.save(tmp_path / "q.npy", x[[2]])  # no paths: '<file name>#<row>'
    (only,) = index.query_descriptors(out, str(tmp_path / "q.npy"), k=1)
    assert only["label"] == "q.npy#0" and only["neighbours"][0]["path"] == names[2]


def test_folder_queries_are_labelled_relative_to_their_folder(tmp_path):
    folder = image_folder(tmp_path / "queries", ["c0/000.png", "c1/000.png"])
    single = image_folder(tmp_path / "one", ["x.png"])
    paths, labels = index.labelled_images([folder, os.path.join(single, "x.png")])
    assert paths == [os.path.join(folder, "c0/000.png"), os.path.join(folder, "c1/000.png"),
                     os.path.join(single, "x.png")]  # fmt: skip
    assert labels == ["c0/000.png", "c1/000.png", os.path.join(single, "x.png")]


def test_gallery_page_has_the_neighbour_gallery_style_and_relative_labels(tmp_path):
    out, x, names = indexed(tmp_path)
    queries = image_folder(tmp_path / "queries", ["c0/000.png", "c1/000.png"])
    results = index.search_results(
        out,
        x[[0, 3]],
        [os.path.join(queries, "c0/000.png"), os.path.join(queries, "c1/000.png")],
        k=3,
        labels=["c0/000.png", "c1/000.png"],
    )
    page = index.write_html(str(tmp_path / "q.html"), results, str(tmp_path / "images"), k=3)
    text = open(page, encoding="utf-8").read()
    assert gallery_assets.CSS in text  # the neighbour gallery's style sheet
    tree = parse_html(text)
    rows = tree.find_all("tr", class_="qrow")
    assert len(rows) == 2
    labels = [r.find("span", class_="path").text() for r in rows]
    assert labels == ["c0/000.png", "c1/000.png"]  # relative paths, not bare '000.png'
    first = [li.find("span", class_="path").text() for li in rows[0].find_all("li", class_="nb")]
    assert first == [n["path"] for n in results[0]["neighbours"]] and first[0] == names[0]
    assert len(tree.find_all("img")) == 2 + 2 * 3  # every query and neighbour image found
    assert tree.find("h1").text() == "Index query results"


def test_query_command_with_descriptors_ends_naming_its_files(tmp_path):
    out, x, names = indexed(tmp_path)
    np.savez(tmp_path / "q.npz", descriptors=x[[5]], paths=np.array(["q5.png"]))
    res, page = tmp_path / "r.json", tmp_path / "r.html"
    cmd = [sys.executable, "-m", "universal_embedding.index", "query", f"--index={out}",
           f"--descriptors={tmp_path / 'q.npz'}", "--k=2", f"--out={res}",
           f"--html={page}"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-2:] == [f"Wrote {res}", f"Wrote {page}"]
    assert proc.stderr == ""
    (saved,) = json.loads(res.read_text())
    assert saved["label"] == "q5.png" and saved["neighbours"][0]["path"] == names[5]
