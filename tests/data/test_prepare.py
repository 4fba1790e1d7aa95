"""data.prepare: conversion of every split with capped shards, skipping, the command line."""

import os
import subprocess
import sys

import pytest

from universal_embedding.data import (
    info_files,
    input_pipeline,
    prepare,
    registry,
    synthetic,
    tfrecords,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def syn_dir(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("syn"))
    synthetic.write_synthetic_uned(d, seed=0, scale=0.1, domains=["met", "rp2k"])
    return d


def test_prepare_converts_with_capped_shards_and_skips_complete(syn_dir, monkeypatch):
    prepare.prepare(syn_dir, ["met", "rp2k"], workers=2)
    tfds = os.path.join(syn_dir, "tfds")
    info_dir = os.path.join(syn_dir, "info_files")
    for dom in ("met", "rp2k"):
        for split in info_files.available_splits(info_dir, dom):
            n = len(info_files.load_split(info_dir, dom, split))
            files = tfrecords.shard_files(registry.tfrecord_prefix(tfds, dom, split))
            want = min(registry.get_domain(dom).num_shards(split), n)
            assert len(files) == want, (dom, split)
            assert input_pipeline.num_records(tfds, dom, split) == n
    assert tfrecords.shard_files(registry.tfrecord_prefix(tfds, "met", "small_train"))[0].endswith(
        "met.small_train.tfrecord-00000-of-00004"
    )
    batches = input_pipeline.eval_batches(tfds, "rp2k", "test", batch_size=8, image_size=8,
                                          normalization="imagenet")  # fmt: skip
    assert sum(int(b["mask"].sum()) for b in batches) == 12  # incl. the #U-escaped files
    monkeypatch.setattr(tfrecords, "convert", lambda *a, **k: pytest.fail("re-converted"))
    prepare.prepare(syn_dir, ["met", "rp2k"])
    assert not os.path.exists(os.path.join(tfds, "cars"))


def test_command_line_from_a_flagfile(tmp_path):
    data_dir = str(tmp_path / "data")
    synthetic.write_synthetic_uned(data_dir, seed=0, scale=0.05, domains=["cars"])
    flagfile = tmp_path / "prepare.flags"
    flagfile.write_text(f"--data_dir={data_dir}\n--domains=cars\n--workers=1\n")
    cmd = [sys.executable, "-m", "universal_embedding.data.prepare", f"--flagfile={flagfile}"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    splits = info_files.available_splits(os.path.join(data_dir, "info_files"), "cars")
    *lines, last = out.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"cars/{s}" for s in splits]
    assert last == f"Wrote {os.path.join(data_dir, 'tfds')}{os.sep}"  # what it wrote, last
    tfds = os.path.join(data_dir, "tfds")
    for split in splits:
        n = len(info_files.load_split(os.path.join(data_dir, "info_files"), "cars", split))
        assert input_pipeline.num_records(tfds, "cars", split) == n


def _shard_records(tfds):
    """{shard: [(key, labels, image bytes), ...]} (a record's bytes may differ between
    processes: protobuf writes map entries in a per-process order)."""
    import tensorflow as tf

    out = {}
    for folder, _, files in os.walk(tfds):
        for name in files:
            if ".tfrecord" in name and "_meta" not in folder:
                rows = []
                for raw in tf.data.TFRecordDataset(os.path.join(folder, name)):
                    f = tf.train.Example.FromString(raw.numpy()).features.feature
                    rows.append((f["key"].bytes_list.value[0], list(f["class_id"].int64_list.value),
                                 f["image_bytes"].bytes_list.value[0]))  # fmt: skip
                out[os.path.relpath(os.path.join(folder, name), tfds)] = rows
    return out


def test_processes_write_the_same_shards_and_errors_stay_one_line(tmp_path):
    data_dir = str(tmp_path / "data")
    synthetic.write_synthetic_uned(data_dir, seed=0, scale=0.05, domains=["cars", "sop"])
    runs = {}
    for processes in (1, 2):
        cmd = [sys.executable, "-m", "universal_embedding.data.prepare", f"--data_dir={data_dir}",
               f"--processes={processes}"]  # fmt: skip
        out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        runs[processes] = (_shard_records(os.path.join(data_dir, "tfds")), out.stdout.splitlines())
        if processes == 2:  # one bar over every split's images
            assert "prepare: 100%" in out.stderr and " 89/89 " in out.stderr, out.stderr[-500:]
        os.rename(os.path.join(data_dir, "tfds"), os.path.join(data_dir, f"tfds{processes}"))
    (one, lines_one), (two, lines_two) = runs[1], runs[2]
    assert len(one) == 1 + 1 + 1 + 5 + 1 + 1, sorted(one)  # cars 3 splits, sop 5+1+1 shards
    assert one == two and sum(map(len, one.values())) == 89
    assert [x.split(":")[0] for x in lines_one] == [x.split(":")[0] for x in lines_two]
    os.remove(
        os.path.join(
            data_dir,
            "images",
            "sop",
            "test",
            sorted(os.listdir(os.path.join(data_dir, "images", "sop", "test")))[0],
            "000.jpg",
        )
    )
    cmd = [sys.executable, "-m", "universal_embedding.data.prepare", f"--data_dir={data_dir}",
           "--processes=2"]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert [x for x in out.stderr.splitlines() if "sop" in x and "missing" in x]
