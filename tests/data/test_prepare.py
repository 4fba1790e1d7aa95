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
