"""Saved faiss indexes over memory-mapped descriptor files, and the `index build` command."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from universal_embedding.knn import descriptor_arrays, saved_index

REPO = pathlib.Path(__file__).resolve().parents[2]


def _unit(rng, n, d):
    x = rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _clustered(n=2000, d=16, centres=40, seed=0):
    rng = np.random.default_rng(seed)
    c = _unit(rng, centres, d)
    x = c[rng.integers(0, centres, n)] + 0.15 * rng.standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_npz_members_are_memory_mapped(tmp_path):
    rng = np.random.default_rng(0)
    vectors, paths = _unit(rng, 50, 8), np.array([f"a/ü{i}.jpg" for i in range(50)])
    np.savez(tmp_path / "d.npz", descriptors=vectors, paths=paths)
    got, got_paths, key = descriptor_arrays.open_descriptors(str(tmp_path / "d.npz"))
    assert isinstance(got, np.memmap) and key == "descriptors"
    np.testing.assert_array_equal(got, vectors)
    assert list(got_paths) == list(paths)
    np.savez_compressed(tmp_path / "c.npz", **{"cars/test": vectors})
    got, none, key = descriptor_arrays.open_descriptors(str(tmp_path / "c.npz"))
    np.testing.assert_array_equal(got, vectors)
    assert none is None and key == "cars/test"
    np.savez(tmp_path / "two.npz", **{"cars/test": vectors, "sop/test": vectors[:3]})
    with pytest.raises(ValueError, match="several descriptor arrays.*--key"):
        descriptor_arrays.open_descriptors(str(tmp_path / "two.npz"))
    with pytest.raises(KeyError, match="no array 'inat/test' .*cars/test, sop/test"):
        descriptor_arrays.open_descriptors(str(tmp_path / "two.npz"), "inat/test")
    assert descriptor_arrays.open_descriptors(str(tmp_path / "two.npz"), "sop/test")[0].shape == (
        3,
        8,
    )


def test_streaming_exact_neighbours_equal_brute_force(monkeypatch):
    monkeypatch.setattr(saved_index, "ADD_BATCH", 4 * 37)  # chunks of 37 rows, a short last one
    x = _unit(np.random.default_rng(1), 500, 12)
    q = x[:20] + 0.01
    ids = saved_index.exact_neighbour_ids(q, x, 7)
    expected = np.argsort(-(q @ x.T), axis=1)[:, :7]
    np.testing.assert_array_equal(ids, expected)
    # a chunk shorter than k (500 = 13 x 37 + 19) and ties across chunks: lower row first
    tied = np.zeros((60, 12), np.float32)
    tied[:, 0] = 1.0  # every score exactly 1
    np.testing.assert_array_equal(saved_index.exact_neighbour_ids(tied[:2], tied, 40)[0],
                                  np.arange(40))  # fmt: skip


def test_flat_index_round_trip(tmp_path):
    x = _clustered(300, 8)
    paths = [f"dir/ïmg {i}.png" for i in range(300)]
    meta = saved_index.build(x, paths, str(tmp_path / "ix"))
    assert meta == {"kind": "flat", "count": 300, "dim": 8, "metric": "inner_product"}
    index = saved_index.SavedIndex(str(tmp_path / "ix"))
    hits = index.search(x[[5, 250]], 3)
    assert [h[0][0] for h in hits] == [paths[5], paths[250]]
    full = x[[5, 250]] @ x.T
    for row, h in zip(full, hits, strict=True):
        assert [p for p, _ in h] == [paths[i] for i in np.argsort(-row)[:3]]
        np.testing.assert_allclose([s for _, s in h], np.sort(row)[::-1][:3], rtol=1e-5)
    with pytest.raises(ValueError, match="dimension 4, the index 8"):
        index.search(x[:2, :4], 3)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_kinds_report_recall_against_exact(tmp_path, kind):
    x = _clustered()
    meta = saved_index.build(x, [str(i) for i in range(len(x))], str(tmp_path), kind=kind,
                             recall_k=10, recall_sample=200)  # fmt: skip
    index = saved_index.SavedIndex(str(tmp_path))
    rows = np.sort(np.random.default_rng(0).permutation(len(x))[:200])
    exact = np.argsort(-(x[rows] @ x.T), axis=1)[:, :10]
    found = [[int(p) for p, _ in h] for h in index.search(x[rows], 10)]
    manual = np.mean([len(set(f) & set(e)) for f, e in zip(found, exact, strict=True)]) / 10
    assert meta["recall_at_10"] == pytest.approx(manual, abs=0.02)
    assert 0.5 < meta["recall_at_10"] <= 1.0 and meta["recall_sample"] == 200
    if kind == "ivf":
        assert meta["nlist"] == saved_index.ivf_lists(len(x)) == 44
        assert meta["nprobe"] == 16
        wide = saved_index.build(x, [str(i) for i in range(len(x))], str(tmp_path / "all"),
                                 kind=kind, recall_sample=200, nprobe=44)  # fmt: skip
        assert wide["recall_at_10"] == 1.0  # every list searched: exact


def test_index_command_builds_from_extract_dir_output(tmp_path):
    x = _clustered(100, 8)
    np.savez(tmp_path / "d.npz", descriptors=x, paths=np.array([f"p{i}" for i in range(100)]))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "universal_embedding.index", "build",
           f"--descriptors={tmp_path / 'd.npz'}", f"--out={tmp_path / 'ix'}"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    meta, _, written = proc.stdout.rpartition("}\n")
    assert json.loads(meta + "}")["count"] == 100
    ix = tmp_path / "ix"
    assert written.splitlines() == [f"Wrote {ix / n}" for n in sorted(os.listdir(ix))]
    assert saved_index.SavedIndex(str(tmp_path / "ix")).search(x[7:8], 1)[0][0][0] == "p7"
    bad = subprocess.run(cmd[:4] + [f"--descriptors={tmp_path / 'none.npz'}", cmd[5]], env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1] == (
        f"error (FileNotFoundError): Descriptor file {tmp_path / 'none.npz'} does not exist. "
        "[--verbose for the traceback]"
    )
