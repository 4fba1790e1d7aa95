"""results.json / .csv / .md and the printed table."""

import csv
import json

from universal_embedding.knn import report

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


def test_format_table_percent_one_decimal():
    table = report.format_table(RESULTS, ["cars", "sop"], ["val_knn", "test_knn"], 5)
    lines = table.splitlines()
    assert lines[0] == (
        "| domain | test_knn separate R@1 | test_knn separate mMP@5 "
        "| test_knn common R@1 | test_knn common mMP@5 |"
    )
    assert lines[2] == "| cars | 42.4 | 31.0 | 5.0 | 99.9 |"
    assert lines[3] == "| sop | 80.0 | n/a | 70.0 | 60.0 |"
    assert lines[4] == "| average | 61.2 | 31.0 | 37.5 | 80.0 |"
    assert "sop test_knn separate: 3" in lines[-1]


def test_write_results(tmp_path):
    paths = report.write_results(str(tmp_path / "w"), RESULTS, ["cars", "sop"], ["test_knn"], 5)
    with open(paths["json"]) as f:
        loaded = json.load(f)
    assert loaded["cars:separate:test_knn:top_1"] == 0.4236
    assert loaded["sop:separate:test_knn:mp_5"] is None  # NaN -> null: valid JSON
    assert len(loaded) == len(RESULTS)
    with open(paths["csv"]) as f:
        rows = list(csv.reader(f))
    assert rows[0][:3] == ["domain", "test_knn:separate:top_1", "test_knn:separate:mp_5"]
    assert len(rows[0]) == 1 + 2 * 4
    assert [r[0] for r in rows[1:]] == ["cars", "sop", "average"]
    assert rows[1][1] == "0.4236" and rows[2][2] == "" and rows[2][4] == "3"
    with open(paths["md"]) as f:
        md = f.read()
    assert "| average | 61.2 | 31.0 | 37.5 | 80.0 |" in md
