"""Domains of your own: a JSON file merged with the registry, end to end with synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from universal_embedding import settings, train_settings
from universal_embedding.configs import config_knn_descr_eval
from universal_embedding.data import custom_domains, registry

TOYS = {
    "name": "toys",
    "splits": ["train", "val", "test"],
    "knn": {"val_knn": ["val", "val"], "test_knn": ["test", "test"]},
    "train_shards": 2,
}


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_CUSTOM", {})


def _write(tmp_path, data, name="domains.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)


def test_declared_domain_joins_the_registry(tmp_path):
    (toys,) = custom_domains.load_domains_file(_write(tmp_path, {"domains": [TOYS]}))
    assert registry.get_domain("toys") is toys
    assert registry.domain_names() == (*registry.DOMAIN_NAMES, "toys")
    assert toys.splits == ("train", "val", "test") and toys.id >= 1000
    assert toys.knn_setup("test_knn") == registry.KnnSetup("test", "test")
    assert toys.num_shards("train") == 2 and toys.num_shards("val") == 1
    assert [d.name for d in registry.parse_domains("cars,toys")] == ["cars", "toys"]
    with pytest.raises(ValueError, match="Unknown kNN setup of domain 'toys': 'train_knn'"):
        toys.knn_setup("train_knn")
    again = custom_domains.load_domains_file(_write(tmp_path, TOYS, "one.json"))
    assert again == (toys,)  # the same declaration twice: fine


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"splits": None}, "domain 'toys': missing 'splits' (required: name, splits, knn"),
        ({"knn": None}, "missing 'knn'"),
        ({"knn": {"test_knn": ["test", "index"]}}, "uses split 'index', which is not in 'splits'"),
        ({"knn": {"best_knn": ["test", "test"]}}, "unknown kNN setup 'best_knn'"),
        ({"train_shards": 0}, "'train_shards' must be a positive integer"),
        ({"colour": "red"}, "unknown field(s) colour"),
        ({"name": "cars"}, "Domain 'cars' is built in"),
    ],
)
def test_errors_name_what_is_missing(tmp_path, change, message):
    spec = {k: v for k, v in {**TOYS, **change}.items() if v is not None}
    path = _write(tmp_path, {"domains": [spec]})
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        custom_domains.load_domains_file(path)
    assert path in str(e.value) or "built in" in str(e.value)


def test_unknown_domain_points_to_domains_file():
    with pytest.raises(ValueError, match="Unknown UnED domain: 'toys'.*domains_file"):
        registry.get_domain("toys")


def test_redeclaring_with_other_settings_fails(tmp_path):
    custom_domains.load_domains_file(_write(tmp_path, TOYS))
    with pytest.raises(ValueError, match="already declared with other settings"):
        custom_domains.load_domains_file(_write(tmp_path, {**TOYS, "train_shards": 3}, "b.json"))


def test_ninth_domain_from_synthetic_data_through_prepare_and_evaluation(tmp_path):
    """Synthetic images of a user domain, converted, planned for training and evaluated."""
    from universal_embedding import descr_eval
    from universal_embedding.configs import tiny
    from universal_embedding.data import info_files, prepare, synthetic, tfrecords
    from universal_embedding.knn import descriptors as knn_descriptors
    from universal_embedding.train import plan

    domains_file = _write(tmp_path, {"domains": [TOYS]})
    data = str(tmp_path / "data")
    custom_domains.load_domains_file(domains_file)  # what --domains_file does
    synthetic.write_synthetic_uned(data, seed=0, scale=0.1, domains=["toys"])
    prepare.prepare(data)  # the declared domain is found by its folder
    assert info_files.available_splits(f"{data}/info_files", "toys") == ("train", "val", "test")
    train = tfrecords.shard_files(registry.tfrecord_prefix(f"{data}/tfds", "toys", "train"))
    assert len(train) == 2

    registry._CUSTOM.clear()  # a new process: the config's domains_file declares it again
    c = tiny.get_config(f"data_dir={data}")
    c.dataset_name = c.knn_eval_names = "toys"
    c.domains_file = domains_file
    settings.register_domains(c)  # the entry point's first step
    p = plan.make_plan(train_settings.plan_settings(c))
    labels = info_files.load_split(c.info_files_dir, "toys", "train").labels
    assert p.domains == ("toys",) and p.train_sizes == (len(labels),)
    assert p.classes_per_head == {"joint": max(max(x) for x in labels) + 1}

    test = info_files.load_split(c.info_files_dir, "toys", "test")
    registry._CUSTOM.clear()
    e = config_knn_descr_eval.get_config()
    e.info_files_dir, e.knn_eval_names, e.domains_file = c.info_files_dir, "toys", domains_file
    e.eval_knns, e.disabled_separate_knns, e.disabled_merged_knns = "test_knn", "", ""
    one_hot = np.eye(max(x[0] for x in test.labels) + 1, dtype=np.float32)
    e.descr_path = str(tmp_path / "d.npz")
    knn_descriptors.save_npz(e.descr_path, {"toys/test": one_hot[[x[0] for x in test.labels]]})
    results = descr_eval.descr_eval(e, str(tmp_path / "eval"))
    assert results["toys:common:test_knn:top_1"] == pytest.approx(1.0)  # class = direction
    assert results["average:separate:test_knn:mp_5"] == results["toys:separate:test_knn:mp_5"]
