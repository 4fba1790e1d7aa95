"""The original UnED code's and UDON's descriptor and results files (docs/uned-benchmark.md §7)."""

import json
import os
import pickle

import ml_collections
import numpy as np
import pytest

from universal_embedding import descr_eval, settings
from universal_embedding.configs import config_knn_descr_eval
from universal_embedding.knn import descriptors
from universal_embedding.original import descriptor_files, json_stream

NAN = float("nan")


def test_results_original_rounds_and_averages_as_the_original():
    results = {
        "cars:separate:test_knn:top_1": 0.0005,  # np.round -> 0.0 (Python's round: 0.001)
        "sop:separate:test_knn:top_1": 0.0025,  # -> 0.002 (Python's round: 0.003)
        "met:separate:test_knn:top_1": 0.1235,  # -> 0.124 (Python's round: 0.123)
        "average:separate:test_knn:top_1": 0.042,  # ours: replaced by the original's average
        "cars:separate:test_knn:mp_5": 0.1004,
        "sop:separate:test_knn:mp_5": 0.1004,
        "met:separate:test_knn:mp_5": 0.1009,
        "average:separate:test_knn:mp_5": 0.10057,  # rounds to 0.101; the original gets 0.1
        "cars:separate:test_knn:map_5": 2 / 3,
        "sop:separate:test_knn:map_5": NAN,  # every query skipped: null, out of the mean
        "met:separate:test_knn:map_5": 0.201,
        "cars:separate:test_knn:skipped_queries": 3.0,  # not in the original's files
        "average:separate:test_knn:skipped_queries": 3.0,
        "cars:common:test_knn:top_1": 0.9996,
        "average:common:test_knn:top_1": 0.9996,
        "teacher_embedd/cars:common:test_knn:top_1": 0.25,  # a further embedding (UDON)
        "teacher_embedd/sop:common:test_knn:top_1": 0.5,
        "teacher_embedd/average:common:test_knn:top_1": 0.375,
    }
    top_1, mp_5, map_5 = descriptor_files.results_original(results)
    assert top_1 == {
        "cars:separate:test_knn:top_1": 0.0,
        "sop:separate:test_knn:top_1": 0.002,
        "met:separate:test_knn:top_1": 0.124,
        "cars:common:test_knn:top_1": 1.0,
        "teacher_embedd/cars:common:test_knn:top_1": 0.25,
        "teacher_embedd/sop:common:test_knn:top_1": 0.5,
        "average:separate:test_knn:top_1": 0.042,  # mean(0, 0.002, 0.124) = 0.042
        "average:common:test_knn:top_1": 1.0,
        "teacher_embedd/average:common:test_knn:top_1": 0.375,
    }
    assert mp_5 == {
        "cars:separate:test_knn:mp_5": 0.1,
        "sop:separate:test_knn:mp_5": 0.1,
        "met:separate:test_knn:mp_5": 0.101,
        "average:separate:test_knn:mp_5": 0.1,  # mean(0.1, 0.1, 0.101) = 0.10033
    }
    assert map_5 == {
        "cars:separate:test_knn:map_5": 0.667,
        "sop:separate:test_knn:map_5": None,
        "met:separate:test_knn:map_5": 0.201,
        "average:separate:test_knn:map_5": 0.434,  # mean(0.667, 0.201)
    }


def test_write_results_original_is_a_list_of_three_objects(tmp_path):
    path = descriptor_files.write_results_original(str(tmp_path), {"cars:common:val_knn:mp_2": 0.5})
    assert path == str(tmp_path / "results_original.json")
    with open(path) as f:
        assert json.load(f) == [
            {},
            {"cars:common:val_knn:mp_2": 0.5, "average:common:val_knn:mp_2": 0.5},
            {},
        ]


def test_writes_the_original_and_udon_layouts(tmp_path):
    path = str(tmp_path / "d" / "descriptors_step_-1.pkl")
    descriptors.save_json(
        path,
        {
            "cars/test": np.array([[0.5, -0.25], [1, 0]]),
            "inshop/index": np.array([[0.1, 0.125]]),
        },
    )
    with open(path) as f:  # JSON text under the .pkl name; each split a one-element list
        assert json.load(f) == {
            "cars": {"test": [[[0.5, -0.25], [1.0, 0.0]]]},
            "inshop": {"index": [[[float(np.float32(0.1)), 0.125]]]},
        }
    assert os.listdir(tmp_path / "d") == ["descriptors_step_-1.pkl"]  # no temp file left
    assert descriptors.load_descriptors(path)["inshop/index"][0, 0] == np.float32(0.1)
    udon = str(tmp_path / "u.json")
    descriptors.save_json(
        udon,
        {"sop/test/universal_student_embedd": [[1, 0]], "sop/test/teacher_embedd": [[0, 1]]},
    )
    with open(udon) as f:
        assert json.load(f) == {
            "sop": {"test": {"universal_student_embedd": [[1.0, 0.0]], "teacher_embedd": [[0, 1]]}}
        }


def _config(**fields):
    c = ml_collections.ConfigDict(
        {"descriptor_format": "original", "descr_save_path": "", "train_dir": "T"}
    )
    c.embedd_to_eval = "projected"
    c.update(fields)
    return c


def _descriptor_file(config, workdir, step):
    return descriptors.descriptor_file(settings.descriptor_output(config), workdir, step)


def test_descriptor_file_names_and_folders():
    assert descriptors.descriptor_file(
        settings.descriptor_output(_config(descriptor_format="npz")), "W", -1
    ) == os.path.join("W", "descriptors.npz")
    assert descriptors.descriptor_file(
        settings.descriptor_output(_config()), "W", -1
    ) == os.path.join("T", "descriptors", "descriptors_step_-1.pkl")
    backbone = _config(embedd_to_eval="backbone_out", train_dir="", descr_save_path="")
    assert descriptors.descriptor_file(
        settings.descriptor_output(backbone), "W", 0
    ) == os.path.join("W", "descriptors_no_project", "descriptors_step_0.pkl")
    assert descriptors.descriptor_file(
        settings.descriptor_output(_config(descr_save_path="S")), "W", 700
    ) == os.path.join("S", "descriptors", "descriptors_step_700.pkl")
    with pytest.raises(ValueError, match="descriptor_format='pickle' is not one of npz, original"):
        descriptors.descriptor_file(
            settings.descriptor_output(_config(descriptor_format="pickle")), "W", -1
        )


def test_knn_main_descriptor_step(tmp_path):
    from universal_embedding import knn_main

    c = ml_collections.ConfigDict({"train_dir": "", "checkpoint": "best"})
    assert knn_main.descriptor_step(c) == 0  # pretrained: the original's step 0
    c.train_dir = str(tmp_path)
    assert knn_main.descriptor_step(c) == -1
    c.checkpoint = "700"
    assert knn_main.descriptor_step(c) == 700
    for step in ("100", "300", "200"):
        os.makedirs(tmp_path / "checkpoints" / "latest" / step)
    c.checkpoint = "latest"
    assert knn_main.descriptor_step(c) == 300


# Random descriptors for two domains, scored in npz, original and UDON files.
RNG = np.random.default_rng(0)
LABELS = {
    "cars/test": RNG.integers(0, 4, 12).tolist(),
    "inshop/test": RNG.integers(0, 3, 5).tolist(),
    "inshop/index": RNG.integers(0, 3, 8).tolist(),
}


def _random(n):
    x = RNG.normal(size=(n, 6)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


DESCR = {key: _random(len(labels)) for key, labels in LABELS.items()}
TEACHER = {key: _random(len(labels)) for key, labels in LABELS.items()}


def _nested(wrap):
    out = {}
    for key, value in DESCR.items():
        domain, split = key.split("/")
        out.setdefault(domain, {})[split] = wrap(key, value)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory, write_info_files):
    base = tmp_path_factory.mktemp("original")
    write_info_files(base / "info", LABELS)
    np.savez(base / "d.npz", **DESCR)
    np.savez(base / "teacher.npz", **TEACHER)
    original = _nested(lambda key, v: [v.tolist()])  # written here, not by the package
    udon = _nested(
        lambda key, v: {"universal_student_embedd": v.tolist(), "teacher_embedd": TEACHER[key]}
    )
    (base / "descriptors_step_-1.pkl").write_text(json.dumps(original))
    (base / "udon.pkl").write_text(json.dumps(udon, default=lambda a: a.tolist()))
    return base


def _run(files, workdir, descr_path, **fields):
    c = config_knn_descr_eval.get_config()
    c.descr_path = str(descr_path)
    c.info_files_dir = str(files / "info")
    c.knn_eval_names = "cars,inshop"
    c.top_k = 3
    c.update(fields)
    descr_eval.descr_eval(c, str(workdir))
    out = {}
    for name in ("results.json", "results_original.json"):
        with open(workdir / name) as f:
            out[name] = json.load(f)
    out["results.json"].pop("provenance")
    return out


def test_original_and_udon_files_score_exactly_like_npz(files, tmp_path):
    npz = _run(files, tmp_path / "npz", files / "d.npz")
    mp = npz["results.json"]["cars:separate:test_knn:mp_3"]
    assert 0 < mp < 1  # something was scored
    assert npz["results_original.json"][1]["cars:separate:test_knn:mp_3"] == round(mp, 3)
    assert _run(files, tmp_path / "orig", files / "descriptors_step_-1.pkl") == npz
    assert _run(files, tmp_path / "udon", files / "udon.pkl") == npz  # the universal student
    teacher = _run(files, tmp_path / "t", files / "udon.pkl", embedd_to_eval="teacher_embedd")
    assert teacher == _run(files, tmp_path / "t_npz", files / "teacher.npz")
    assert teacher != npz


def test_descr_eval_converts_npz_to_the_original_file_and_back(files, tmp_path):
    work = tmp_path / "w"
    npz = _run(files, work, files / "d.npz", save_descriptors=True, descriptor_format="original")
    written = work / "descriptors" / "descriptors_step_-1.pkl"
    with open(written) as f:
        assert np.array_equal(json.load(f)["cars"]["test"][0], DESCR["cars/test"])
    assert _run(files, tmp_path / "again", written) == npz
    back = tmp_path / "back"
    _run(files, back, written, save_descriptors=True, descriptor_format="npz")
    with np.load(back / "descriptors.npz") as data:
        assert sorted(data.files) == sorted(DESCR)
        for key, value in DESCR.items():
            np.testing.assert_array_equal(data[key], value)


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"cars": {"test": [[[1, 0]], [[0, 1]]]}}', "'cars/test': is a list of 2 arrays.*ONE"),
        ('{"cars": {"test": [[[1, 0], [1]]]}}', "'cars/test': has rows of different lengths"),
        ('{"cars": {"test": [[[NaN, 0], [1, 0]]]}}', "'cars/test': 1 rows hold NaN or inf"),
        ('{"cars": {"test": [[[1, 0], [0, Infinity]]]}}', "'cars/test': 1 rows hold NaN or inf"),
        ('{"cars": {"test": [1, 0]}}', r"'cars/test': is an array of shape \(2,\)"),
        ('{"cars": {"test": []}}', "'cars/test': is an empty list"),
        ('{"cars": {"test": [[[true, false]]]}}', "'cars/test': holds bool values"),
        ('{"cars": {"test": {"e": [[1, 0], [1]]}}}', "'cars/test/e': has rows of different"),
        ('{"cars": {"test": {"e": {"f": [[1]]}}}}', "'cars/test/e': holds dict where"),
        ('{"cars": {"test": "x"}}', "'cars/test': holds str where"),
        ("[[[1, 0]]]", "expected"),
        ('{"cars": {"test": [[[1, 0]]]', "not valid JSON"),
    ],
)
def test_bad_json_layouts_fail_in_one_line_naming_the_file(
    tmp_path, text, message, assert_load_fails_in_one_line
):
    assert_load_fails_in_one_line(tmp_path / "descriptors_step_-1.pkl", text, message)


class _Plant:
    """Unpickling this would create a folder."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (self.target,)


@pytest.mark.parametrize("protocol, message", [(4, "is a Python pickle"), (0, "not valid JSON")])
def test_a_real_pickle_is_never_loaded(tmp_path, protocol, message):
    planted = tmp_path / "planted"
    path = tmp_path / "descriptors_step_-1.pkl"
    path.write_bytes(pickle.dumps({"cars": _Plant(str(planted))}, protocol=protocol))
    with pytest.raises(ValueError, match=message):
        descriptors.load_descriptors(str(path))
    assert not planted.exists()


def test_json_too_large_for_memory_fails_before_reading(tmp_path, monkeypatch):
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"cars": {"test": [[[1.0, 0.0]] * 50]}}))
    # streamed: 16 bytes per number (49 commas between rows + 50 within them, + 1), the buffer
    needed = 16 * 100 + 32 * json_stream.CHUNK
    assert descriptor_files.stream_memory_needed(str(path)) == needed
    monkeypatch.setattr(descriptor_files, "available_memory", lambda: needed - 1)
    with pytest.raises(ValueError, match=f"'{path}' is .* GB of JSON; reading it needs about"):
        descriptors.load_descriptors(str(path))
    monkeypatch.setattr(descriptor_files, "available_memory", lambda: needed)
    assert descriptors.load_descriptors(str(path))["cars/test"].shape == (50, 2)
    # parsed whole (a layout the stream does not read): text + 40 bytes a number + 64 a list
    path.write_text(json.dumps({"cars": {"test": [[[1.0, 0.0]] * 50], "x": [1]}}))
    whole = path.stat().st_size + 40 * 101 + 64 * 53
    assert descriptor_files.json_memory_needed(str(path)) == whole
    monkeypatch.setattr(descriptor_files, "available_memory", lambda: whole - 1)
    with pytest.raises(ValueError, match="reading it needs about"):
        descriptors.load_descriptors(str(path))


@pytest.mark.parametrize("chunk", [1, 2, 5, 64, 1 << 22])
def test_streamed_reading_equals_the_whole_parse(tmp_path, monkeypatch, chunk):
    rng = np.random.default_rng(0)
    a, b, c = (rng.random(s, dtype=np.float32) for s in [(45, 3), (5, 4), (30, 2)])
    layouts = {
        "original": {"cars": {"test": [a]}, "sop": {"val": [c]}},
        "udon": {"cars": {"test": {"embedding": a, "teacher": b}}},
        "plain": {"cars": {"test": a}, "sop": {"val": c}},
    }
    monkeypatch.setattr(json_stream, "CHUNK", chunk)
    for name, tree in layouts.items():
        path = str(tmp_path / f"{name}.json")
        descriptor_files.write_json(path, tree)
        with open(path) as f:
            streamed = json_stream.read_arrays(f)
            f.seek(0)
            whole = json.load(f, object_pairs_hook=descriptor_files._convert_lists)
        flat = {
            "/".join(p for p in (d, s, e) if p): v
            for d, splits in whole.items()
            for s, value in splits.items()
            for e, v in (value.items() if isinstance(value, dict) else [("", value)])
        }
        assert streamed.keys() == flat.keys(), name
        for key, arr in flat.items():
            assert streamed[key].dtype == np.float64 and np.array_equal(streamed[key], arr)


def test_streamed_reading_memory_is_the_arrays_not_the_text(tmp_path):
    from tests.hostile import peak_runs

    x = np.random.default_rng(0).random((150_000, 64), dtype=np.float32)
    path = str(tmp_path / "d.pkl")
    descriptor_files.save_original(path, {"cars/test": x})
    setup = f"from universal_embedding.original import descriptor_files as d\npath = {path!r}\n"
    runs = peak_runs(setup, {"read": "a = d.load_json_arrays(path)['cars/test']"})
    assert runs["read"]["error"] == ""
    # float64 arrays (77 MB, twice while joined) + a block; the text alone is 190 MB, its lists
    # ~380 MB more
    assert runs["read"]["grown_mb"] < 260, runs


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"cars": {"test": [[[' + "1" * 5000 + "]]]}}", "not valid JSON"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_hostile_json_fails_in_one_line(tmp_path, text, message, assert_load_fails_in_one_line):
    assert_load_fails_in_one_line(tmp_path / "d.pkl", text, message)


def test_json_writer_streams_the_text_json_dump_writes(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    tree = {
        "cars": {"test": [rng.random((45, 3), dtype=np.float32)]},
        "é": {"paths": ["ü/a.jpg", "b"], "val": {"embedding": np.zeros((0, 4), np.float32)}},
        "sop": {"test": np.zeros((3, 0), np.float32), "one": rng.random(3)},
    }
    monkeypatch.setattr(descriptor_files, "ROWS_PER_WRITE", 7)
    path = str(tmp_path / "d.pkl")
    descriptor_files.write_json(path, tree)
    with open(path) as f:
        assert f.read() == json.dumps(tree, default=descriptor_files._tolist)


def test_json_writer_memory_is_one_block_not_the_file(tmp_path):
    from tests.hostile import peak_runs

    setup = (
        "import numpy as np\n"
        "from universal_embedding.original import descriptor_files as d\n"
        "x = np.random.default_rng(0).random((150_000, 64), dtype=np.float32)\n"
        f"path = {str(tmp_path / 'd.pkl')!r}\n"
    )
    runs = peak_runs(setup, {"write": "d.save_original(path, {'cars/test': x})"})
    assert runs["write"]["error"] == ""
    # the whole array as Python lists would be ~350 MB (9.6M floats); a 20k-row block ~50 MB
    assert runs["write"]["grown_mb"] < 120, runs
    loaded = descriptor_files.load_json_arrays(str(tmp_path / "d.pkl"))
    assert loaded["cars/test"].shape == (150_000, 64)
