"""Synthetic mini-UnED: split structure, counts, labels, disk layout, determinism, command line."""

import hashlib
import os
import subprocess
import sys

import pytest

from universal_embedding.data import image_files, info_files, registry, synthetic

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

EXTRA = {"inshop": {"index"}, "gldv2": {"index"}, "met": {"index", "small_train", "small_index"}}


@pytest.fixture(scope="module")
def syn_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("syn"))
    synthetic.write_synthetic_uned(d, seed=0, scale=0.1)
    return d


def _classes(split):
    return {c for labels in split.labels for c in labels}


def test_split_structure_counts_and_files(syn_dir):
    info_dir = os.path.join(syn_dir, "info_files")
    total, unique = 0, set()
    for dom in registry.DOMAINS:
        splits = info_files.available_splits(info_dir, dom.name)
        assert set(splits) == {"train", "val", "test"} | EXTRA.get(dom.name, set())
        assert set(splits) <= set(dom.splits)
        for split in splits:
            s = info_files.load_split(info_dir, dom.name, split)
            total += len(s)
            unique.update(s.paths)
            for p in s.paths:
                assert image_files.resolve_path(os.path.join(syn_dir, "images"), p), p
        train = info_files.load_split(info_dir, dom.name, "train")
        assert len(_classes(train)) == 4 and 32 <= len(train) <= 48  # round(40 * 0.1) classes
        assert info_files.num_classes(info_dir, dom.name) == 4
    assert (len(unique), total) == (516, 604)  # met index / small_* reuse 88 train entries
    files = [
        os.path.join(r, f) for r, _, fs in os.walk(os.path.join(syn_dir, "images")) for f in fs
    ]
    assert len(files) == len(unique)
    assert any(f.endswith(".png") for f in files) and any(f.endswith(".jpg") for f in files)
    assert any("#U996e#U6599#U74f6" in f for f in files)  # rp2k unicode name, escaped on disk


def test_eval_classes_relevance_and_multilabel(syn_dir):
    info_dir = os.path.join(syn_dir, "info_files")
    for dom in registry.DOMAINS:
        train = _classes(info_files.load_split(info_dir, dom.name, "train"))
        for knn in ("val_knn", "test_knn"):
            setup = dom.knn_setup(knn)
            q = info_files.load_split(info_dir, dom.name, setup.query)
            idx = info_files.load_split(info_dir, dom.name, setup.index)
            if dom.name != "met" or knn == "val_knn":  # met test searches its train set
                assert not _classes(q) & train, (dom.name, knn)
            for i, labels in enumerate(q.labels):  # every query has a relevant index image
                hits = [j for j, lj in enumerate(idx.labels) if set(lj) & set(labels)]
                assert [j for j in hits if not (setup.self_search and j == i)], (dom.name, knn, i)
    met = {s: info_files.load_split(info_dir, "met", s) for s in ("train", "index", "small_train")}
    assert tuple(met["index"].paths) == tuple(met["train"].paths)
    assert set(met["small_train"].paths) < set(met["train"].paths)
    gld = info_files.load_split(info_dir, "gldv2", "test")
    assert sum(len(labels) > 1 for labels in gld.labels) == 2


def _digest(d, domains):
    h = hashlib.sha256()
    for dom in domains:
        for sub in ("images", "info_files"):
            for root, _, names in sorted(os.walk(os.path.join(d, sub, dom))):
                for n in sorted(names):
                    h.update(n.encode())
                    h.update(open(os.path.join(root, n), "rb").read())
    return h.hexdigest()


def test_deterministic_for_a_seed(syn_dir, tmp_path):
    synthetic.write_synthetic_uned(
        str(tmp_path / "a"), seed=0, scale=0.1, domains=["gldv2", "rp2k"]
    )
    assert _digest(str(tmp_path / "a"), ["gldv2", "rp2k"]) == _digest(syn_dir, ["gldv2", "rp2k"])
    assert not os.path.exists(tmp_path / "a" / "images" / "cars")
    synthetic.write_synthetic_uned(str(tmp_path / "b"), seed=1, scale=0.1, domains=["gldv2"])
    assert _digest(str(tmp_path / "b"), ["gldv2"]) != _digest(syn_dir, ["gldv2"])


def test_command_line_writes_what_the_function_writes(tmp_path):
    """The README's command (space-separated absl flags) equals write_synthetic_uned."""
    out = subprocess.run(
        [sys.executable, "-m", "universal_embedding.data.synthetic", "--data_dir",
         str(tmp_path / "cli"), "--seed", "3", "--scale", "0.05"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == f"Synthetic mini-UnED written to {tmp_path / 'cli'}"
    synthetic.write_synthetic_uned(str(tmp_path / "fn"), seed=3, scale=0.05, domains=["sop"])
    assert _digest(str(tmp_path / "cli"), ["sop"]) == _digest(str(tmp_path / "fn"), ["sop"])
    assert sorted(os.listdir(tmp_path / "cli" / "info_files")) == sorted(registry.DOMAIN_NAMES)
