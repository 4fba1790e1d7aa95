"""benchmarks/full_scale.py at scale 0.01 (slow: about 6 minutes on 2 cores), and its data
maker's counts at any scale (fast)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from universal_embedding.data import info_files, registry

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import full_scale  # noqa: E402
import full_scale_data  # noqa: E402

STAGES = [
    "make_data", "prepare", "train_joint", "final_test", "write_original_descriptors",
    "train_separate", "train_killed_twice_and_rerun", "faiss_bare_search", "descr_eval_npz",
    "descr_eval_original", "knn_main", "index_descriptors", "index_build_flat",
    "index_build_ivf", "index_query_1000", "udon_train", "udon_final_test",
]  # fmt: skip


def test_split_sizes_follow_the_registry():
    met = registry.get_domain("met")
    sizes = full_scale_data.split_sizes(met, 0.01)
    assert sizes["train"] == sizes["index"] == round(397121 * 0.01) == 3971
    assert sizes["small_index"] == sizes["small_train"] + 2 * sizes["val"] == 383 + 2 * 4
    gldv2 = full_scale_data.split_sizes(registry.get_domain("gldv2"), 1.0)
    assert gldv2 == {"train": 1422914, "val": 157556, "test": 1129, "index": 761757}
    assert full_scale_data.split_sizes(registry.get_domain("cars"), 0.0001)["val"] == 4


def test_labels_have_the_real_class_counts_and_gldv2_queries_two_landmarks():
    rng = np.random.default_rng(0)
    inat = registry.get_domain("inat")
    labels = full_scale_data.labels_of(inat, "train", 273929, 1.0, rng)
    assert labels.max() < 4552 and len(np.unique(labels)) > 4500
    paths, first, second = full_scale_data.entries(registry.get_domain("gldv2"), "test", 30, 1, 0)
    assert len(set(paths)) == 30 and (second[:10] == first[:10] + 1).all()
    assert (second[10:] == -1).all()


@pytest.mark.slow
def test_full_scale_at_one_percent(tmp_path):
    out = tmp_path / "report.json"
    subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", "full_scale.py"), "--scale", "0.01",
         "--workdir", str(tmp_path / "w"), "--out", str(out)],
        check=True, cwd=ROOT, timeout=1800,
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert [s["name"] for s in report["stages"]] == STAGES
    assert all(s["seconds"] > 0 and s["peak_rss_bytes"] > 0 for s in report["stages"])
    assert report["checks"]["resumed_losses_equal"] is True
    w = tmp_path / "w"
    infos = str(w / "data" / "info_files")
    arrays = np.load(w / "train" / "descriptors.npz")
    for d in registry.DOMAINS:
        sizes = full_scale_data.split_sizes(d, 0.01)
        for split in info_files.available_splits(infos, d.name):
            assert len(info_files.load_split(infos, d.name, split)) == sizes[split]
        setup = d.knn_setup("test_knn")
        for split in {setup.query, setup.index}:
            assert arrays[f"{d.name}/{split}"].shape == (sizes[split], 64)
    results = json.loads((w / "train" / "results.json").read_text())
    assert "average:common:test_knn:mp_5" in results
    assert (w / "train" / "descriptors_original.pkl").stat().st_size > 0
    assert full_scale.losses(str(w / "train")) == full_scale.losses(str(w / "resume"))
