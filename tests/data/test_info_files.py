"""Info files and normalisation: validation, splits, classes; both import without TensorFlow."""

import json
import subprocess
import sys

import pytest

from universal_embedding.data import info_files, normalization


def _write(tmp_path, domain, split, entries):
    path = tmp_path / domain / f"{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, ensure_ascii=False))
    return str(path)


def test_load_split_labels_num_classes_and_available_splits(tmp_path):
    _write(
        tmp_path,
        "gldv2",
        "train",
        [{"path": "a.jpg", "class_id": 4}, {"path": "b.jpg", "class_id": 1}],
    )
    _write(
        tmp_path,
        "gldv2",
        "test",
        [{"path": "q.jpg", "class_id": [7, 2]}, {"path": "r.jpg", "class_id": 0}],
    )
    _write(tmp_path, "gldv2", "index", [{"path": "i.jpg", "class_id": 3}])
    split = info_files.load_split(str(tmp_path), "gldv2", "test")
    assert (split.domain, split.split) == ("gldv2", "test")
    assert tuple(split.paths) == ("q.jpg", "r.jpg")
    assert tuple(split.labels) == ((7, 2), (0,))
    assert split.labels.values.tolist() == [7, 2, 0] and split.labels.offsets.tolist() == [0, 2, 3]
    assert len(split) == 2
    assert info_files.num_classes(str(tmp_path), "gldv2") == 5
    assert info_files.num_classes(str(tmp_path), "gldv2", "test") == 8
    assert info_files.available_splits(str(tmp_path), "gldv2") == ("train", "test", "index")
    assert info_files.available_splits(str(tmp_path), "cars") == ()


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"path": "a"}, "must hold a JSON list"),
        ([{"path": "a.jpg", "class_id": 1}, {"path": "b.jpg"}], "entry 1"),
        ([{"path": "", "class_id": 1}], "entry 0"),
        ([{"path": "a.jpg", "class_id": -1}], "non-negative int"),
        ([{"path": "a.jpg", "class_id": [1, "2"]}], "non-negative int"),
        ([{"path": "a.jpg", "class_id": []}], "non-negative int"),
        ([{"path": "a.jpg", "class_id": True}], "non-negative int"),
    ],
)
def test_read_info_file_rejects_bad_entries(tmp_path, entries, message):
    path = _write(tmp_path, "sop", "val", entries)
    with pytest.raises(ValueError, match=message) as err:
        info_files.read_info_file(path)
    assert path in str(err.value)


def test_missing_info_file_and_unknown_domain(tmp_path):
    with pytest.raises(FileNotFoundError, match="split 'val'.*val.json does not exist"):
        info_files.load_split(str(tmp_path), "inat", "val")
    with pytest.raises(ValueError, match="Valid names: cars"):
        info_files.load_split(str(tmp_path), "imagenet", "val")


def test_normalization_names_and_statistics():
    assert normalization.normalization_name("clip_vit_with_embedding") == "clip"
    assert normalization.normalization_name("vit_with_embedding") == "imagenet"
    assert normalization.normalization_name("vit_with_embedding", "clip") == "clip"
    assert normalization.MEAN_STD["clip"][0] == (0.48145466, 0.4578275, 0.40821073)
    assert normalization.MEAN_STD["clip"][1] == (0.26862954, 0.26130258, 0.27577711)
    assert normalization.MEAN_STD["imagenet"] == ((0.5,) * 3, (0.5,) * 3)
    with pytest.raises(ValueError, match="Valid names: clip, imagenet"):
        normalization.normalization_name("vit", "inception")


def test_info_files_and_normalization_import_without_tensorflow():
    code = (
        "import sys; import universal_embedding.data.info_files, "
        "universal_embedding.data.normalization; "
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
