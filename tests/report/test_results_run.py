"""results.html titled by its run (workdir name, model, checkpoint and step, date) and ending
with its provenance; knn_main's label of the evaluated checkpoint."""

from __future__ import annotations

import datetime

import ml_collections

from tests.html_tree import parse_html
from universal_embedding import knn_main
from universal_embedding.report import results_files, results_page
from universal_embedding.writers import provenance


def test_results_page_is_titled_by_its_run_and_shows_its_provenance(tmp_path, results):
    workdir = str(tmp_path / "i21k_USCRR")
    run = {"model": "vit_with_embedding B/16", "checkpoint": "best, step 7000"}
    before = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    paths = results_files.write_results(workdir, results, ["cars", "sop"], ["test_knn"], 5, run)
    with open(paths["html"], encoding="utf-8") as f:
        doc = parse_html(f.read())
    title = doc.find("title").text()
    workdir_name, model, checkpoint, date, heading = title.split(" · ")
    assert (workdir_name, model, checkpoint) == ("i21k_USCRR", *run.values())
    assert heading == "kNN results (k=5)"
    assert date.startswith(before) and date.endswith(" UTC") and len(date) == 20
    assert doc.find("h1").text() == "i21k_USCRR: kNN results (k=5)"
    assert doc.find("p", class_="run").text() == (
        f"model: vit_with_embedding B/16 · checkpoint: best, step 7000 · date: {date}"
    )
    prov = dict(zip(
        [dt.text() for dt in doc.find("dl", class_="prov").find_all("dt")],
        [dd.text() for dd in doc.find("dl", class_="prov").find_all("dd")],
        strict=True,
    ))  # fmt: skip
    expected = provenance.provenance()
    assert prov["git commit"] == (expected["git_commit"] or "not run from a git checkout")
    assert prov["devices"] == ", ".join(expected["devices"])
    assert prov["jax"] == expected["versions"]["jax"]


def test_a_page_without_a_run_keeps_the_plain_title(results):
    page = parse_html(results_page.render(results, ["cars", "sop"], [("test_knn", "separate")], 5))
    assert page.find("title").text() == page.find("h1").text() == "kNN results (k=5)"
    assert page.find_all("dl") == []


def knn_config(**fields) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict(
        {"train_dir": "", "checkpoint": "best", "pretrained_ckpt": "", "allow_random_init": False}
    )
    c.update(fields)
    return c


def test_checkpoint_label_names_the_evaluated_weights(tmp_path):
    for series, steps in (("best", ["6"]), ("latest", ["4", "6"])):
        for step in steps:
            (tmp_path / "run" / "checkpoints" / series / step).mkdir(parents=True)
    train_dir = str(tmp_path / "run")
    assert knn_main.checkpoint_label(knn_config(train_dir=train_dir)) == (
        "run best checkpoint, step 6"
    )
    assert knn_main.checkpoint_label(knn_config(train_dir=train_dir, checkpoint="latest")) == (
        "run latest checkpoint, step 6"
    )
    assert knn_main.checkpoint_label(knn_config(train_dir=train_dir, checkpoint="4")) == (
        "run, step 4"
    )
    assert knn_main.checkpoint_label(knn_config(pretrained_ckpt="/m/vit_b16.npz")) == (
        "pretrained vit_b16.npz"
    )
    assert knn_main.checkpoint_label(knn_config()) == "random initialisation"
