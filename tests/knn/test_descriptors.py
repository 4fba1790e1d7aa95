"""Descriptor files (npz, original JSON) and batched extraction with padding removed."""

import json

import numpy as np
import pytest

from universal_embedding.knn import descriptors, evaluate

DESCR = {
    "cars/test": np.array([[1, 0], [0.6, 0.8], [0, 1]], np.float32),
    "inshop/test": np.array([[0.8, 0.6]], np.float32),
    "inshop/index": np.array([[1, 0], [0, 1]], np.float32),
}
LABELS = {"cars/test": [(0,), (0,), (1,)], "inshop/test": [(3, 4)], "inshop/index": [(4,), (5,)]}


def test_npz_and_json_round_trip_and_give_identical_results(tmp_path):
    npz, js = str(tmp_path / "d.npz"), str(tmp_path / "sub" / "d.json")
    descriptors.save_npz(npz, DESCR)
    descriptors.save_json(js, DESCR)
    with open(js) as f:
        assert json.load(f)["inshop"]["index"] == [[[1.0, 0.0], [0.0, 1.0]]]  # original layout
    from_npz, from_json = descriptors.load_descriptors(npz), descriptors.load_descriptors(js)
    assert sorted(from_npz) == sorted(from_json) == sorted(DESCR)
    for key, value in DESCR.items():
        np.testing.assert_array_equal(from_npz[key], value)
        np.testing.assert_array_equal(from_json[key], value)
        assert from_json[key].dtype == np.float32
    args = dict(domains=["cars", "inshop"], separate_knns=["test_knn"], merged_knns=["test_knn"])
    res_npz = evaluate.evaluate(from_npz, LABELS, **args)
    res_json = evaluate.evaluate(from_json, LABELS, **args)
    assert res_npz == res_json
    assert res_npz["inshop:separate:test_knn:top_1"] == 1.0  # (0.8, 0.6) -> index 0, label 4


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        descriptors.load_descriptors(str(tmp_path / "nope.npz"))
    path = tmp_path / "dir.npz"
    np.savez(path, descriptors=np.zeros((2, 2)), paths=np.array(["a", "b"]))
    with pytest.raises(ValueError, match="key 'descriptors' is not of the form 'domain/split'"):
        descriptors.load_descriptors(str(path))
    ragged = tmp_path / "r.json"
    ragged.write_text(json.dumps({"cars": {"test": [[1, 0], [1]]}}))
    with pytest.raises(ValueError, match="key 'cars/test'.*ragged"):
        descriptors.load_descriptors(str(ragged))
    flat = tmp_path / "f.json"
    flat.write_text(json.dumps({"cars/test": [[1, 0]]}))
    with pytest.raises(ValueError, match="expected"):
        descriptors.load_descriptors(str(flat))
    with pytest.raises(ValueError, match=r"a .npz, .json or \(original JSON\) .pkl file"):
        (tmp_path / "x.txt").write_text("")
        descriptors.load_descriptors(str(tmp_path / "x.txt"))


@pytest.mark.parametrize(
    "value, message",
    [
        (np.array([[1 + 2j, 0]]), "complex"),
        (np.array([[1e39, 0]]), r"beyond \+-1e\+06"),  # float64: would become inf as float32
        (np.array([[np.nan, 0]]), "NaN or inf"),
        (np.array([["a", "b"]]), "<U1 values, not numbers"),
        (np.array([[{"x": 1}, 0]], dtype=object), "Python objects .*not plain numbers"),
    ],
)
def test_bad_npz_values_name_file_and_key(tmp_path, value, message):
    path = tmp_path / "d.npz"
    np.savez(path, **{"cars/test": np.ones((2, 2)), "sop/test": value})
    with pytest.raises(ValueError, match=f"'{path}', key 'sop/test'.*{message}") as e:
        descriptors.load_descriptors(str(path))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"cars": {"test": [[1, 0], [0, 1]', "not valid JSON.*truncated"),
        ('{"cars": {"test": [["1", "0"]]}}', "key 'cars/test'.*<U1 values, not numbers"),
        ('{"cars": {"test": [[1e39, 0]]}}', r"key 'cars/test'.*beyond \+-1e\+06"),
        ('{"cars": {"test": [[null, 0]]}}', "key 'cars/test'.*not numbers"),
    ],
)
def test_bad_json_names_file_and_key(tmp_path, text, message, assert_load_fails_in_one_line):
    assert_load_fails_in_one_line(tmp_path / "d.json", text, message)


def test_extract_removes_padding_in_order():
    batches = [
        {"images": np.arange(4)[:, None] * np.ones((4, 3)), "mask": np.array([1, 1, 1, 1], bool)},
        {
            "images": np.arange(4, 8)[:, None] * np.ones((4, 3)),
            "mask": np.array([1, 1, 0, 0], bool),
        },
    ]
    calls = []

    def embed(images):
        calls.append(len(images))
        return images[:, :2] * 2

    out = descriptors.extract(embed, iter(batches), 6)
    assert out.dtype == np.float32 and out.shape == (6, 2)
    assert out[:, 0].tolist() == [0, 2, 4, 6, 8, 10]
    assert calls == [4, 4]
    with pytest.raises(ValueError, match="Extracted 6 descriptors but 7 were expected"):
        descriptors.extract(embed, iter(batches), 7)


def test_extract_accepts_jax_arrays_and_no_mask():
    import jax.numpy as jnp

    out = descriptors.extract(lambda x: jnp.asarray(x) + 1, [{"images": np.zeros((3, 2))}], 3)
    np.testing.assert_array_equal(out, np.ones((3, 2), np.float32))
