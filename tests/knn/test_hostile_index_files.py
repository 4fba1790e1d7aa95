"""Saved ivf and hnsw indexes whose declared sizes were patched to huge values: refused in one
line naming the file and the field before faiss allocates them (peak memory measured in a
fresh process). Layout: knn/index_file.py's docstring."""

from __future__ import annotations

import shutil
import struct

import numpy as np
import pytest

from tests import hostile
from universal_embedding.knn import saved_index

N, D = 200, 8  # ivf: 5 lists, all non-empty ("full" sizes)
HEADER = 37  # fourcc, d, ntotal, 2 dummies, is_trained, metric (inner product: no metric_arg)
HUGE = 1 << 28  # 268M items: 1 GiB and more for faiss to allocate


def _vector_counts(data: bytes, at: int, items: tuple[int, ...]) -> list[int]:
    """Offsets of the counts of consecutive count-prefixed vectors of `items`-byte elements."""
    out = []
    for item in items:
        out.append(at)
        at += 8 + item * struct.unpack_from("<Q", data, at)[0]
    return out


def _field_offsets(kind: str, data: bytes) -> dict[str, int]:
    if kind == "ivf":
        lists = data.index(b"ilar")
        return {
            "the quantizer's codes": HEADER + 16 + HEADER,
            "an inverted list size": lists + 4 + 16 + 4 + 8,  # first entry of the "full" sizes
            "the inverted list sizes": lists + 4 + 16 + 4,
        }
    probas, cum, levels, offsets, neighbors = _vector_counts(data, HEADER, (8, 4, 4, 8, 4))
    storage = neighbors + 8 + 4 * struct.unpack_from("<Q", data, neighbors)[0] + 20
    return {
        "the HNSW levels": levels,
        "the HNSW neighbors": neighbors,
        "the HNSW storage's codes": storage + HEADER,
    }


@pytest.fixture(scope="module")
def patched(tmp_path_factory):
    """{kind: genuine index dir}, {(kind, field): (patched copy's dir, its peak_runs result)}:
    every patched copy opened in one fresh process."""
    root = tmp_path_factory.mktemp("patched")
    rows = np.random.default_rng(0).normal(size=(N, D)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    dirs, good_dirs = {}, {}
    for kind in ("ivf", "hnsw"):
        good = good_dirs[kind] = root / kind
        saved_index.build(rows, [f"{i}.jpg" for i in range(N)], str(good), kind=kind)
        data = (good / "index.faiss").read_bytes()
        for n, (field, at) in enumerate(_field_offsets(kind, data).items()):
            out = root / f"{kind}{n}"
            shutil.copytree(good, out)
            bad = bytearray(data)
            bad[at : at + 8] = struct.pack("<Q", HUGE)
            (out / "index.faiss").write_bytes(bytes(bad))
            dirs[(kind, field)] = str(out)
    setup = "from universal_embedding.knn import saved_index"
    calls = {repr(key): f"saved_index.SavedIndex({d!r})" for key, d in dirs.items()}
    runs = hostile.peak_runs(setup, calls)
    return good_dirs, {key: (d, runs[repr(key)]) for key, d in dirs.items()}


def test_genuine_ivf_and_hnsw_indexes_pass_the_walk(patched):
    for kind, good in patched[0].items():
        index = saved_index.SavedIndex(str(good))
        assert (index.meta["kind"], index.index.ntotal, index.index.d) == (kind, N, D)


@pytest.mark.parametrize(
    "kind, field, error_type, message",
    [
        ("ivf", "the quantizer's codes", "ValueError", "codes field declares 268,435,456 floats"),
        ("ivf", "an inverted list size", "LimitError", "size declares 268,435,456 x 40 bytes"),
        ("ivf", "the inverted list sizes", "LimitError", "sizes declares 268,435,456 x 8 bytes"),
        ("hnsw", "the HNSW levels", "LimitError", "levels declares 268,435,456 x 4 bytes"),
        ("hnsw", "the HNSW neighbors", "LimitError", "neighbors declares 268,435,456 x 4 bytes"),
        ("hnsw", "the HNSW storage's codes", "ValueError", "codes field declares 268,435,456"),
    ],
)
def test_huge_declared_size_is_one_line_before_faiss_allocates(
    patched, kind, field, error_type, message
):
    path, run = patched[1][(kind, field)]
    error = run["error"]
    assert error.startswith(f"{error_type}: ") and field in error, error
    assert f"{path}/index.faiss: " in error and message in error, error
    assert "refused before reading it. Rebuild the index." in error
    assert "\n" not in error
    assert run["grown_mb"] < hostile.PEAK_BOUND_MB, f"grew {run['grown_mb']:.0f} MB"


def test_an_index_of_another_type_than_meta_json_says_is_refused(patched, tmp_path):
    out = tmp_path / "mixed"
    shutil.copytree(patched[0]["ivf"], out)
    shutil.copy(patched[0]["hnsw"] / "index.faiss", out / "index.faiss")
    with pytest.raises(ValueError, match="is a faiss b'IHNf' index, expected b'IwFl'"):
        saved_index.SavedIndex(str(out))
