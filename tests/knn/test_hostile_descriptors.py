"""Hostile descriptor files: declared-size bombs, truncated members, bad rows, keys that climb
out of the info folder. Memory is measured in a fresh process."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from tests import hostile
from universal_embedding import index
from universal_embedding.errors import limits
from universal_embedding.knn import descriptor_arrays, descriptors

BOMB_SHAPE = (320_000, 256)  # 328 MB of float32 zeros, about 0.3 MB deflated


@pytest.fixture(scope="module")
def bomb_runs(tmp_path_factory):
    """descr_eval's and index build's readers on a deflated bomb, in one fresh process."""
    root = tmp_path_factory.mktemp("bomb")
    path = hostile.zero_bomb_npz(str(root / "descriptors.npz"), {"cars/test": BOMB_SHAPE})
    setup = (
        "from universal_embedding.knn.descriptors import load_descriptors\n"
        "from universal_embedding.index import build_from_file"
    )
    calls = {
        "descr_eval": f"load_descriptors({path!r})",
        "index_build": f"build_from_file({path!r}, {str(root / 'idx')!r}, key='cars/test')",
    }
    return hostile.peak_runs(setup, calls), root


def _unit_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("reader", ["descr_eval", "index_build"])
def test_deflated_bomb_is_refused_before_inflating(bomb_runs, reader):
    runs, root = bomb_runs
    error, grown = runs[reader]["error"], runs[reader]["grown_mb"]
    assert error.startswith("LimitError: ") and "327,680,000 bytes" in error
    assert "UE_MAX_INFLATE_RATIO" in error
    assert grown < hostile.PEAK_BOUND_MB, f"grew {grown:.0f} MB"
    assert not (root / "idx").exists()


def test_raising_the_ratio_lets_a_genuine_compressible_file_through(tmp_path, monkeypatch):
    path = str(tmp_path / "d.npz")
    rows = np.zeros((70_000, 256), np.float32)  # 71.7 MB: over 64 MiB of slack, tiny deflated
    rows[:, 0] = 1.0
    np.savez_compressed(path, **{"cars/test": rows})
    with pytest.raises(limits.LimitError, match="71,680,000 bytes"):
        descriptors.load_all_descriptors(path)
    monkeypatch.setenv("UE_MAX_INFLATE_RATIO", "100000")
    assert descriptors.load_all_descriptors(path)["cars/test"].shape == (70_000, 256)


def test_truncated_member_is_named_truncated_not_python_objects(tmp_path):
    good = str(tmp_path / "good.npz")
    np.savez(good, **{"cars/test": _unit_rows(50, 8)})
    raw = bytearray(open(good, "rb").read())
    bad = tmp_path / "bad.npz"
    with zipfile.ZipFile(good) as z:  # cut the member's data short, headers kept consistent
        info = z.getinfo("cars/test.npy")
        member = z.read(info)
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("cars/test.npy", member[: len(member) - 100])
    del raw
    with pytest.raises(ValueError, match="truncated or inconsistent") as e:
        descriptors.load_all_descriptors(str(bad))
    assert "Python objects" not in str(e.value)
    with pytest.raises(ValueError, match="truncated or inconsistent"):
        descriptor_arrays.open_descriptors(str(bad), "cars/test")


def test_object_member_is_refused_unread(tmp_path):
    path = str(tmp_path / "obj.npz")
    np.savez(path, **{"cars/test": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(ValueError, match="key 'cars/test': holds Python objects"):
        descriptors.load_all_descriptors(path)


@pytest.mark.parametrize(
    "value, message",
    [(np.nan, "1 rows hold NaN or inf \\(first: row 3\\)"), (1e30, "beyond"), (0.0, "norm below")],
)
def test_index_build_applies_descr_eval_checks(tmp_path, value, message):
    rows = _unit_rows(10, 8)
    rows[3] = value
    path = str(tmp_path / "d.npz")
    np.savez(path, descriptors=rows, paths=np.array([f"{i}.jpg" for i in range(10)]))
    with pytest.raises(ValueError, match=message):
        index.build_from_file(path, str(tmp_path / "idx"))
    assert not (tmp_path / "idx").exists()


def test_index_build_key_cannot_climb_out_of_the_info_folder(tmp_path):
    info = tmp_path / "info"
    (info / "cars").mkdir(parents=True)
    outside = [{"path": "/etc/secret.jpg", "class_id": 0}] * 4
    (tmp_path / "outside.json").write_text(json.dumps(outside))  # info/cars/../../outside.json
    path = str(tmp_path / "d.npz")
    np.savez(path, **{"cars/../../outside": _unit_rows(4, 8)})
    with pytest.raises(ValueError, match="leads outside") as e:
        index.build_from_file(path, str(tmp_path / "idx"), info_files_dir=str(info))
    assert "cars/../../outside" in str(e.value)
    assert not (tmp_path / "idx").exists()


def test_fifo_descriptor_file_is_refused_without_hanging(tmp_path):
    import os

    fifo = str(tmp_path / "d.npz")
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="FIFO"):
        descriptors.load_all_descriptors(fifo)
    with pytest.raises(OSError, match="FIFO"):
        index.build_from_file(fifo, str(tmp_path / "idx"))


def _built_index(tmp_path, n: int = 6, d: int = 4) -> str:
    from universal_embedding.knn import saved_index

    out = str(tmp_path / "idx")
    saved_index.build(_unit_rows(n, d), [f"{i}.jpg" for i in range(n)], out)
    return out


def test_index_file_declaring_gigabytes_is_refused_before_faiss_reads_it(tmp_path):
    import struct

    from universal_embedding.knn import saved_index

    out = _built_index(tmp_path)
    # the 45-byte flat index of the issue: a header whose codes vector declares 2.5 GB
    header = struct.pack("<4siqqq?i", b"IxFI", 4, 6, 1 << 20, 1 << 20, True, 0)
    codes = struct.pack("<Q", 625_000_000)
    (tmp_path / "idx" / "index.faiss").write_bytes(header + codes)
    setup = "from universal_embedding.knn import saved_index"
    runs = hostile.peak_runs(setup, {"open": f"saved_index.SavedIndex({out!r})"})
    assert runs["open"]["error"].endswith("6 x 4 floats do not fit its 45 bytes.")
    assert runs["open"]["grown_mb"] < hostile.PEAK_BOUND_MB
    (tmp_path / "idx" / "index.faiss").write_bytes(header + codes + bytes(96))  # sizes fit
    with pytest.raises(ValueError, match="declares 625,000,000 floats.*refused before reading"):
        saved_index.SavedIndex(out)


def test_index_files_of_another_dimension_are_one_line(tmp_path):
    from universal_embedding.knn import saved_index

    out = _built_index(tmp_path)
    other = _built_index(tmp_path / "other", d=8)
    os_replace = __import__("shutil").copy
    os_replace(f"{other}/index.faiss", f"{out}/index.faiss")
    with pytest.raises(ValueError, match="dimension 8, but meta.json says 6 of dimension 4"):
        saved_index.SavedIndex(out)


def test_fifo_index_file_is_refused_without_hanging(tmp_path):
    import os

    from universal_embedding.knn import saved_index

    out = _built_index(tmp_path)
    os.remove(f"{out}/index.faiss")
    os.mkfifo(f"{out}/index.faiss")
    with pytest.raises(OSError, match="FIFO"):
        saved_index.SavedIndex(out)
