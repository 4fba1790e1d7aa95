"""Registry facts pinned to docs/uned-benchmark.md §2."""

import pytest

from universal_embedding.data import registry


def test_benchmark_totals():
    assert registry.total_split_size("train") == 2_831_222
    assert registry.total_split_size("test") == 241_986
    assert registry.knn_index_size("test_knn") == 1_397_126


def test_domain_ids_and_order():
    assert registry.DOMAIN_NAMES == (
        "cars",
        "sop",
        "inshop",
        "inat",
        "met",
        "gldv2",
        "food2k",
        "rp2k",
    )
    assert [d.id for d in registry.DOMAINS] == list(range(8))


def test_train_classes_and_shards():
    classes = {d.name: d.num_train_classes for d in registry.DOMAINS}
    assert classes == {
        "cars": 78,
        "sop": 9054,
        "inshop": 3198,
        "inat": 4552,
        "met": 224408,
        "gldv2": 73182,
        "food2k": 900,
        "rp2k": 1074,
    }
    shards = {d.name: d.num_shards("train") for d in registry.DOMAINS}
    assert shards == {
        "cars": 1,
        "sop": 5,
        "inshop": 2,
        "inat": 30,
        "met": 40,
        "gldv2": 150,
        "food2k": 50,
        "rp2k": 20,
    }
    assert registry.get_domain("gldv2").num_shards("index") == 1


def test_knn_setups():
    expected_test_index = {"inshop": "index", "met": "index", "gldv2": "index"}
    for d in registry.DOMAINS:
        assert d.knn_setup("train_knn") == registry.KnnSetup("train", "train")
        val = d.knn_setup("val_knn")
        assert val == registry.KnnSetup("val", "small_index" if d.name == "met" else "val")
        test = d.knn_setup("test_knn")
        assert test.query == "test"
        assert test.index == expected_test_index.get(d.name, "test")
        assert test.self_search == (d.name not in expected_test_index)


def test_extra_splits():
    met = registry.get_domain("met")
    assert met.split_size("small_train") == 38_307
    assert met.split_size("index") == met.split_size("train") == 397_121
    assert "small_index" in met.splits
    assert registry.get_domain("inshop").split_size("index") == 12_612
    assert registry.get_domain("gldv2").split_size("index") == 761_757
    assert registry.get_domain("cars").splits == ("train", "val", "test")


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="cars, sop, inshop"):
        registry.get_domain("carz")
    with pytest.raises(ValueError, match="train_knn, val_knn, test_knn"):
        registry.parse_knn_names("val_knn,tst_knn")
    with pytest.raises(ValueError, match="train, val, test"):
        registry.get_domain("cars").split_size("index")


def test_parse_and_paths():
    assert [d.name for d in registry.parse_domains(" met, cars ")] == ["met", "cars"]
    assert registry.parse_knn_names("") == ()
    assert registry.info_file_path("I", "met", "small_index") == "I/met/small_index.json"
    prefix = registry.tfrecord_prefix("T", "sop", "train")
    assert prefix == "T/sop/train/sop.train.tfrecord"
    assert registry.shard_name(prefix, 3, 5) == prefix + "-00003-of-00005"
    assert registry.shard_name(prefix, 0, 1) == prefix
