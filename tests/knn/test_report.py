"""results.json / .csv / .md / .html, the printed table and the TensorBoard summaries."""

import csv
import json
import os
import subprocess

import jax
import pytest

from universal_embedding.knn import evaluate, report

RESULTS = {
    "cars:separate:test_knn:top_1": 0.4236,
    "cars:separate:test_knn:mp_5": 0.31,
    "cars:separate:test_knn:map_5": 0.2,
    "cars:separate:test_knn:skipped_queries": 0.0,
    "sop:separate:test_knn:top_1": 0.8,
    "sop:separate:test_knn:mp_5": float("nan"),
    "sop:separate:test_knn:map_5": 0.5,
    "sop:separate:test_knn:skipped_queries": 3.0,
    "cars:common:test_knn:top_1": 0.05,
    "cars:common:test_knn:mp_5": 0.999,
    "cars:common:test_knn:map_5": 0.1,
    "cars:common:test_knn:skipped_queries": 0.0,
    "sop:common:test_knn:top_1": 0.7,
    "sop:common:test_knn:mp_5": 0.6,
    "sop:common:test_knn:map_5": 0.4,
    "sop:common:test_knn:skipped_queries": 3.0,
    "average:separate:test_knn:top_1": 0.6118,
    "average:separate:test_knn:mp_5": 0.31,
    "average:separate:test_knn:map_5": 0.35,
    "average:separate:test_knn:skipped_queries": 3.0,
    "average:common:test_knn:top_1": 0.375,
    "average:common:test_knn:mp_5": 0.7995,
    "average:common:test_knn:map_5": 0.25,
    "average:common:test_knn:skipped_queries": 3.0,
}


def test_format_table_every_metric_right_aligned():
    table = report.format_table(RESULTS, ["cars", "sop"], ["val_knn", "test_knn"], 5)
    lines = table.splitlines()
    heads = [c.strip() for c in lines[0].strip("|").split("|")]
    assert heads == ["domain"] + [
        f"{p} {m}" for p in ("separate", "common") for m in ("R@1", "mMP@5", "mAP@5", "skipped")
    ]
    rule = lines[1].strip("|").split("|")
    assert rule[0] == "-" * 9 and all(c.endswith("-:") and set(c) == {"-", ":"} for c in rule[1:])
    rows = {line.split("|")[1].strip(): line for line in lines[2:]}
    cells = {d: [c.strip() for c in line.strip("|").split("|")][1:] for d, line in rows.items()}
    assert cells["cars"] == ["42.4", "31.0", "20.0", "0", "5.0", "99.9", "10.0", "0"]
    assert cells["sop"] == ["80.0", "n/a", "50.0", "3", "70.0", "60.0", "40.0", "3"]
    assert cells["average"] == ["61.2", "31.0", "35.0", "3", "37.5", "80.0", "25.0", "3"]
    assert len({len(line) for line in lines}) == 1  # padded: the columns line up as text
    assert rows["sop"].startswith("| sop     |         80.0 |            n/a |")  # to the right
    assert report.title(RESULTS, ["val_knn", "test_knn"], 5) == "kNN results (k=5): test_knn"


def test_format_table_names_the_knn_setup_when_there_are_several():
    both = {**RESULTS, **{k.replace("test_knn", "val_knn"): v for k, v in RESULTS.items()}}
    table = report.format_table(both, ["cars", "sop"], ["val_knn", "test_knn"], 5)
    heads = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    assert heads[1] == "val_knn separate R@1" and heads[9] == "test_knn separate R@1"
    assert len(heads) == 1 + 16


def test_write_results(tmp_path, html_tree):
    paths = report.write_results(str(tmp_path / "w"), RESULTS, ["cars", "sop"], ["test_knn"], 5)
    with open(paths["json"]) as f:
        loaded = json.load(f)
    assert loaded["cars:separate:test_knn:top_1"] == 0.4236
    assert loaded["sop:separate:test_knn:mp_5"] is None  # NaN -> null: valid JSON
    prov = loaded.pop("provenance")
    assert len(loaded) == len(RESULTS)
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
    assert report.format_table(RESULTS, ["cars", "sop"], ["test_knn"], 5) in md
    assert "skipped: queries without any relevant index image" in md


def test_results_html_table_and_charts(tmp_path, html_tree):
    paths = report.write_results(str(tmp_path), RESULTS, ["cars", "sop"], ["test_knn"], 5)
    with open(paths["html"], encoding="utf-8") as f:
        doc = html_tree(f.read())
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


def test_summary_scalars_skip_zero_skips():
    scalars = report.summary_scalars(RESULTS)
    assert scalars["knn/cars:separate:test_knn:top_1"] == 0.4236
    assert scalars["mp/cars:common:test_knn:mp_5"] == 0.999
    assert scalars["map/sop:common:test_knn:map_5"] == 0.4
    skipped = {k: v for k, v in scalars.items() if k.startswith("skipped/")}
    assert skipped == {
        f"skipped/{d}:{p}:test_knn:skipped_queries": 3.0
        for d in ("sop", "average")
        for p in ("separate", "common")
    }
    assert len(scalars) == len(RESULTS) - 2  # the two zero skip counts of cars


def test_summary_texts_is_the_markdown_table():
    plan = evaluate.EvalPlan(("cars", "sop"), ("test_knn",), ("test_knn",), 5)
    texts = report.summary_texts(RESULTS, plan)
    assert list(texts) == ["results/test"]
    head, table = texts["results/test"].split("\n\n")
    assert head == "kNN results (k=5): test_knn, percent"
    assert table == report.format_table(RESULTS, ["cars", "sop"], ["test_knn"], 5)
