"""Per-image columns as arrays: the same items as the tuples they replace, indexing included."""

import numpy as np
import pytest

from universal_embedding.data.columns import LabelSets, PackedStrings

STRINGS = ["a.jpg", "", "dir/é.png", "\ud800lone.jpg", "日本/x.jpg"]
SETS = [(3,), (7, 2), (0,), (5, 5, 1)]


def test_packed_strings_hold_every_string_and_index_like_a_tuple():
    packed = PackedStrings.from_strings(iter(STRINGS))
    assert len(packed) == 5
    assert list(packed) == STRINGS
    assert [packed[i] for i in range(-5, 5)] == STRINGS + STRINGS
    assert packed[1:4] == tuple(STRINGS[1:4]) and packed[::-2] == tuple(STRINGS[::-2])
    assert "dir/é.png" in packed and "missing" not in packed
    # UTF-8 bytes: é takes 2, the lone surrogate 3, 日 and 本 3 each
    assert packed.offsets.tolist() == [0, 5, 5, 15, 26, 38]
    for bad in (5, -6):
        with pytest.raises(IndexError):
            packed[bad]


def test_label_sets_hold_every_set_with_flat_values():
    sets = LabelSets.from_sets(SETS)
    assert len(sets) == 4
    assert list(sets) == SETS and sets[-1] == (5, 5, 1) and sets[np.int64(1)] == (7, 2)
    assert sets[1:3] == ((7, 2), (0,))
    assert sets.values.tolist() == [3, 7, 2, 0, 5, 5, 1]
    assert sets.offsets.tolist() == [0, 1, 3, 4, 7] and sets.lengths.tolist() == [1, 2, 1, 3]
    with pytest.raises(IndexError):
        sets[4]
    empty = LabelSets.from_sets([])
    assert len(empty) == 0 and list(empty) == [] and empty.offsets.tolist() == [0]


def test_an_info_split_keeps_no_python_object_per_image(tmp_path):
    import json

    from universal_embedding.data import info_files

    n = 20000
    folder = tmp_path / "sop"
    folder.mkdir()
    entries = [{"path": f"class_{i % 97}/img_{i:06d}.jpg", "class_id": i % 97} for i in range(n)]
    (folder / "train.json").write_text(json.dumps(entries))
    split = info_files.load_split(str(tmp_path), "sop", "train")
    assert len(split) == n and split.paths[12345] == "class_26/img_012345.jpg"
    assert split.labels[12345] == (26,)
    # one bytes buffer of the paths' UTF-8 and three int64 arrays: no object per image
    assert isinstance(split.paths.data, bytes)
    assert len(split.paths.data) == sum(len(e["path"]) for e in entries)
    assert split.paths.offsets.shape == split.labels.offsets.shape == (n + 1,)
    assert split.labels.values.shape == (n,)
    assert {a.dtype for a in (split.paths.offsets, split.labels.offsets, split.labels.values)} == {
        np.dtype(np.int64)
    }
