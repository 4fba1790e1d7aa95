"""results.json / .csv / .md / .html, write_outputs (+ descriptors) and TensorBoard summaries."""

import csv
import json
import os
import subprocess

import jax
import numpy as np
import pytest

from tests.html_tree import parse_html
from universal_embedding.knn import descriptors, evaluate
from universal_embedding.report import results_files, table


def test_write_results(tmp_path, results):
    paths = results_files.write_results(
        str(tmp_path / "w"), results, ["cars", "sop"], ["test_knn"], 5
    )
    with open(paths["json"]) as f:
        loaded = json.load(f)
    assert loaded["cars:separate:test_knn:top_1"] == 0.4236
    assert loaded["sop:separate:test_knn:mp_5"] is None  # NaN -> null: valid JSON
    prov = loaded.pop("provenance")
    assert len(loaded) == len(results)
    assert prov["versions"]["jax"] == jax.__version__ and "flax" in prov["versions"]
    assert prov["devices"] == [f"{jax.device_count()} x cpu cpu"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=os.path.dirname(__file__)).stdout.strip()  # fmt: skip
    assert prov["git_commit"].removesuffix("-dirty") == head
    with open(paths["csv"]) as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["domain", "test_knn:separate:top_1", "test_knn:separate:mp_5"]
    assert len(rows[0]) == 1 + 2 * 4
    assert [r[0] for r in rows[1:]] == ["cars", "sop", "average"]
    assert rows[1][1] == "0.4236" and rows[2][2] == "" and rows[2][4] == "3"
    with open(paths["md"]) as f:
        md = f.read()
    assert md.startswith("# kNN results (k=5): test_knn\n")
    assert table.format_table(results, ["cars", "sop"], ["test_knn"], 5) in md
    assert "skipped: queries without any relevant index image" in md


def test_results_html_table_and_charts(tmp_path, results):
    paths = results_files.write_results(str(tmp_path), results, ["cars", "sop"], ["test_knn"], 5)
    with open(paths["html"], encoding="utf-8") as f:
        doc = parse_html(f.read())
    assert doc.find("html").attrs["lang"] == "en"
    assert "width=device-width" in doc.find("meta", name="viewport").attrs["content"]
    table = doc.find("table")
    groups = [th.text() for th in table.find_all("th", scope="colgroup")]
    assert groups == ["test_knn · separate index", "test_knn · common index"]
    titles = [th.text() for th in table.find_all("th", scope="col")][1:]
    assert titles == ["R@1", "mMP@5", "mAP@5", "skipped"] * 2
    body = {
        tr.find("th").text(): [td.text() for td in tr.find_all("td")]
        for tr in table.find("tbody").find_all("tr")
    }
    assert body == {
        "cars": ["42.4", "31.0", "20.0", "0", "5.0", "99.9", "10.0", "0"],
        "sop": ["80.0", "n/a", "50.0", "3", "70.0", "60.0", "40.0", "3"],
        "average": ["61.2", "31.0", "35.0", "3", "37.5", "80.0", "25.0", "3"],
    }
    charts = doc.find_all("svg")
    assert [c.find("title").text() for c in charts] == [
        "test_knn R@1 per domain, percent",
        "test_knn mMP@5 per domain, percent",
    ]
    assert all(c.attrs["role"] == "img" for c in charts)
    ids = [n.attrs["id"] for n in doc.iter() if "id" in n.attrs]
    assert len(ids) == len(set(ids))  # one hatch pattern per chart: no duplicate ids
    r1, mp = charts
    bars = {b.find("title").text(): float(b.attrs["width"]) for b in r1.find_all("rect")[4:]}
    assert bars == {  # 240 px = 100 %
        "cars, separate: 42.4": pytest.approx(240 * 0.4236, abs=0.05),
        "cars, common: 5.0": pytest.approx(12.0),
        "sop, separate: 80.0": pytest.approx(192.0),
        "sop, common: 70.0": pytest.approx(168.0),
        "average, separate: 61.2": pytest.approx(240 * 0.6118, abs=0.05),
        "average, common: 37.5": pytest.approx(90.0),
    }
    fills = {b.attrs["fill"] for b in r1.find_all("rect")[4:]}
    assert fills == {"#0072b2", "url(#test_knn-top_1-hatch)"}
    assert len(mp.find_all("rect")) == 2 + 5 + 2  # legend + bars (sop separate is n/a) + pattern
    assert "n/a" in [t.text() for t in mp.find_all("text")]


def test_summary_scalars_skip_zero_skips(results):
    scalars = results_files.summary_scalars(results)
    assert scalars["knn/cars:separate:test_knn:top_1"] == 0.4236
    assert scalars["mp/cars:common:test_knn:mp_5"] == 0.999
    assert scalars["map/sop:common:test_knn:map_5"] == 0.4
    skipped = {k: v for k, v in scalars.items() if k.startswith("skipped/")}
    assert skipped == {
        f"skipped/{d}:{p}:test_knn:skipped_queries": 3.0
        for d in ("sop", "average")
        for p in ("separate", "common")
    }
    assert len(scalars) == len(results) - 2  # the two zero skip counts of cars


def test_summary_texts_is_the_markdown_table(results):
    plan = evaluate.EvalPlan(("cars", "sop"), ("test_knn",), ("test_knn",), 5)
    texts = results_files.summary_texts(results, plan)
    assert list(texts) == ["results/test"]
    head, text = texts["results/test"].split("\n\n")
    assert head == "kNN results (k=5): test_knn, percent"
    assert text == table.format_table(results, ["cars", "sop"], ["test_knn"], 5)


def test_write_outputs_on_process_zero_only(tmp_path, monkeypatch, results):
    plan = evaluate.EvalPlan(("cars", "sop"), ("test_knn",), ("test_knn",), 5)
    descr = {"cars/test": np.eye(3, dtype=np.float32)}
    paths = results_files.write_outputs(str(tmp_path / "w"), results, plan, descr)
    assert sorted(paths) == ["csv", "descriptors", "html", "json", "md", "original"]
    assert paths["descriptors"] == str(tmp_path / "w" / "descriptors.npz")
    np.testing.assert_array_equal(descriptors.load_descriptors(paths["descriptors"])["cars/test"],
                                  descr["cars/test"])  # fmt: skip
    assert all(os.path.isfile(p) for p in paths.values())
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    assert results_files.write_outputs(str(tmp_path / "other"), results, plan, descr) == {}
    assert not os.path.exists(tmp_path / "other")
