"""Several embeddings per image: descriptor files (npz and original JSON) and results keys."""

import json

import numpy as np
import pytest

from universal_embedding.knn import descriptors, evaluate, multi_embedding

LABELS = {"cars/test": [(0,), (0,), (1,), (1,)], "sop/test": [(2,), (2,), (3,)]}
ARGS = {"domains": ["cars", "sop"], "separate_knns": ["test_knn"], "merged_knns": ["test_knn"]}
NAMES = ("universal_student_embedd", "teacher_embedd")


def _random(seed: int, dim: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {}
    for key, labels in LABELS.items():
        x = rng.normal(size=(len(labels), dim)).astype(np.float32)
        out[key] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


STUDENT, TEACHER = _random(0, 4), _random(1, 6)
MULTI = {f"{k}/{n}": d[k] for n, d in zip(NAMES, (STUDENT, TEACHER), strict=True) for k in LABELS}


def test_json_and_npz_hold_every_embedding(tmp_path):
    npz, js = str(tmp_path / "d.npz"), str(tmp_path / "d.json")
    descriptors.save_npz(npz, MULTI)
    descriptors.save_json(js, MULTI)
    with open(js) as f:
        nested = json.load(f)
    assert sorted(nested["sop"]["test"]) == sorted(NAMES)  # {domain: {split: {embedding: ...}}}
    assert np.allclose(nested["sop"]["test"]["teacher_embedd"], TEACHER["sop/test"])
    for path in (npz, js):
        loaded = descriptors.load_all_descriptors(path)
        assert sorted(loaded) == sorted(MULTI)
        for key, value in MULTI.items():
            np.testing.assert_array_equal(loaded[key], value)
        student = descriptors.load_descriptors(path)  # the universal student by default
        teacher = descriptors.load_descriptors(path, "teacher_embedd")
        for key in LABELS:
            np.testing.assert_array_equal(student[key], STUDENT[key])
            np.testing.assert_array_equal(teacher[key], TEACHER[key])
        with pytest.raises(ValueError, match="no embedding 'backbone_out'"):
            descriptors.load_descriptors(path, "backbone_out")


def test_universal_results_under_the_usual_keys_others_prefixed():
    plan = evaluate.EvalPlan(("cars", "sop"), ("test_knn",), ("test_knn",), k=5)
    out = multi_embedding.evaluate(MULTI, LABELS, plan, NAMES)
    student = evaluate.evaluate(STUDENT, LABELS, **ARGS)
    teacher = evaluate.evaluate(TEACHER, LABELS, **ARGS)
    assert out.results == {**student, **{f"teacher_embedd/{k}": v for k, v in teacher.items()}}
    assert multi_embedding.results_of(out.results, None) == student
    assert multi_embedding.results_of(out.results, "teacher_embedd") == teacher


def test_embedding_names():
    assert multi_embedding.parse_embeddings(" universal_student_embedd, teacher_embedd") == NAMES
    assert multi_embedding.is_multi(NAMES) and multi_embedding.is_multi(("teacher_embedd",))
    assert not multi_embedding.is_multi(("projected",))
    with pytest.raises(ValueError, match="empty"):
        multi_embedding.parse_embeddings(" , ")
