"""The results table: every metric, right-aligned, percent with one decimal; its title."""

from universal_embedding.report import table


def test_format_table_every_metric_right_aligned(results):
    text = table.format_table(results, ["cars", "sop"], ["val_knn", "test_knn"], 5)
    lines = text.splitlines()
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
    assert table.title(results, ["val_knn", "test_knn"], 5) == "kNN results (k=5): test_knn"


def test_format_table_names_the_knn_setup_when_there_are_several(results):
    both = {**results, **{k.replace("test_knn", "val_knn"): v for k, v in results.items()}}
    text = table.format_table(both, ["cars", "sop"], ["val_knn", "test_knn"], 5)
    heads = [c.strip() for c in text.splitlines()[0].strip("|").split("|")]
    assert heads[1] == "val_knn separate R@1" and heads[9] == "test_knn separate R@1"
    assert len(heads) == 1 + 16


def test_titled_table_is_the_title_over_the_table(results):
    text = table.titled_table(results, ["cars", "sop"], ["test_knn"], 5)
    assert text == "kNN results (k=5): test_knn\n" + table.format_table(
        results, ["cars", "sop"], ["test_knn"], 5
    )
    assert table.format_value("top_1", None) == table.format_value("mp_5", float("nan")) == "n/a"
