"""Separate and merged protocols: hand-computed results, a per-query reference, bad inputs."""

import ml_collections
import numpy as np
import pytest

from universal_embedding import settings
from universal_embedding.configs import config_knn_descr_eval
from universal_embedding.knn import evaluate


def _unit(*degrees):
    r = np.deg2rad(degrees)
    return np.stack([np.cos(r), np.sin(r)], 1).astype(np.float32)


# cars test_knn: test -> test (self excluded); inshop test_knn: test -> index. k = 2.
HAND_DESCR = {
    "cars/test": _unit(0, 10, 30, 100, 250),
    "inshop/test": _unit(3, 200),
    "inshop/index": _unit(45, 190, 205),
}
HAND_LABELS = {
    "cars/test": [(0,), (1,), (0,), (1,), (2,)],  # image 4: label 2 has no other image -> skipped
    "inshop/test": [(5,), (6,)],
    "inshop/index": [(5,), (6,), (5,)],
}
# Worked out by hand (angles -> ranking):
# separate cars: q0 [1 no, 2 yes] n=1 AP=.5 | q1 [0 no, 2 no] | q2 [1 no, 0 yes] AP=.5 |
#   q3 [2 no, 1 yes] AP=.5 | q4 skipped.  inshop: q0 [0 yes, 2 yes] all 1 | q1 [2 no, 1 yes] AP=.5
# merged (global ids: cars 0-4, inshop index 5-7): cars q2 -> [inshop 45deg, cars 1]: AP 0;
#   cars q3 -> [inshop 45deg, cars 2]: AP 0; inshop q0 -> [cars 0, cars 1]: all 0.
HAND_EXPECTED = {
    "cars:separate:test_knn:top_1": 0.0,
    "cars:separate:test_knn:mp_2": 0.0,
    "cars:separate:test_knn:map_2": 0.375,
    "cars:separate:test_knn:skipped_queries": 1.0,
    "inshop:separate:test_knn:top_1": 0.5,
    "inshop:separate:test_knn:mp_2": 0.5,
    "inshop:separate:test_knn:map_2": 0.75,
    "inshop:separate:test_knn:skipped_queries": 0.0,
    "average:separate:test_knn:top_1": 0.25,
    "average:separate:test_knn:mp_2": 0.25,
    "average:separate:test_knn:map_2": 0.5625,
    "average:separate:test_knn:skipped_queries": 1.0,
    "cars:common:test_knn:top_1": 0.0,
    "cars:common:test_knn:mp_2": 0.0,
    "cars:common:test_knn:map_2": 0.125,
    "cars:common:test_knn:skipped_queries": 1.0,
    "inshop:common:test_knn:top_1": 0.0,
    "inshop:common:test_knn:mp_2": 0.0,
    "inshop:common:test_knn:map_2": 0.25,
    "inshop:common:test_knn:skipped_queries": 0.0,
    "average:common:test_knn:top_1": 0.0,
    "average:common:test_knn:mp_2": 0.0,
    "average:common:test_knn:map_2": 0.1875,
    "average:common:test_knn:skipped_queries": 1.0,
}


def _run(descr=HAND_DESCR, labels=HAND_LABELS, **kw):
    args = dict(domains=["cars", "inshop"], separate_knns=["test_knn"], merged_knns=["test_knn"])
    args.update(k=2, backend="faiss")
    args.update(kw)
    return evaluate.evaluate(descr, labels, **args)


@pytest.mark.parametrize("backend", ["faiss", "jax", "numpy"])
def test_hand_computed_separate_and_merged(backend):
    results = _run(backend=backend)
    assert set(results) == set(HAND_EXPECTED)
    for key, value in HAND_EXPECTED.items():
        assert results[key] == pytest.approx(value), key


def test_merged_only_and_neighbours_with_global_ids():
    out = evaluate.run_evaluation(
        HAND_DESCR, HAND_LABELS, domains=["cars", "inshop"], separate_knns=[],
        merged_knns=["test_knn"], k=2, keep_neighbours=True,
    )  # fmt: skip
    assert not any(":separate:" in key for key in out.results)
    assert out.results["average:common:test_knn:map_2"] == pytest.approx(0.1875)
    cars = out.neighbours[("test_knn", "merged", "cars")]
    assert cars.ids.tolist()[:4] == [[1, 2], [0, 2], [5, 1], [5, 2]]
    assert cars.index_keys == ("cars/test", "inshop/index")
    part, row = cars.locate(np.array([5, 2]))
    assert part.tolist() == [1, 0] and row.tolist() == [0, 2]
    assert cars.n_relevant.tolist() == [1, 1, 1, 1, 0]


def test_self_excluded_inside_merged_index_and_ties_by_position():
    # identical vectors: rank order is index order; each query's own row is never returned
    descr = {"cars/test": _unit(0, 0, 0), "sop/test": np.array([[1, 0], [0, 1]], np.float32)}
    labels = {"cars/test": [(0,), (1,), (0,)], "sop/test": [(0,), (0,)]}
    res = _run(descr, labels, domains=["cars", "sop"], k=2)
    # separate cars: q0 -> [1 no, 2 yes] n=1 AP .5; q1 skipped (n=0); q2 -> [0 yes, 1 no]
    assert res["cars:separate:test_knn:top_1"] == pytest.approx(0.5)
    assert res["cars:separate:test_knn:mp_2"] == pytest.approx(0.5)
    assert res["cars:separate:test_knn:map_2"] == pytest.approx(0.75)
    assert res["cars:separate:test_knn:skipped_queries"] == 1
    # merged: sop row 0 ties with cars rows at 1.0 but comes later: cars results unchanged
    assert res["cars:common:test_knn:map_2"] == pytest.approx(0.75)
    # sop alone: each query's only other image is relevant
    assert res["sop:separate:test_knn:top_1"] == 1.0
    assert res["sop:separate:test_knn:map_2"] == 1.0
    # merged: sop q0 -> [cars 0, cars 1] (score 1); q1 -> all tie at 0 -> [cars 0, cars 1]
    assert res["sop:common:test_knn:top_1"] == 0.0
    assert res["sop:common:test_knn:map_2"] == 0.0
    assert res["average:common:test_knn:map_2"] == pytest.approx(0.375)


def _reference(descr, labels, domains, setups, merged, k):
    """Per-query loop: full sort of the (merged) index, self removed, spec formulas."""
    from universal_embedding.data import registry

    out = {}
    index_keys = [f"{d}/{registry.get_domain(d).knn_setup(setups).index}" for d in domains]
    for d in domains:
        setup = registry.get_domain(d).knn_setup(setups)
        qk, xk = f"{d}/{setup.query}", f"{d}/{setup.index}"
        parts = index_keys if merged else [xk]
        x = np.concatenate([descr[p] for p in parts])
        owner = sum(([p] * len(descr[p]) for p in parts), [])
        row = np.concatenate([np.arange(len(descr[p])) for p in parts])
        vals = {"top_1": [], f"mp_{k}": [], f"map_{k}": []}
        skipped = 0
        for i, q in enumerate(descr[qk]):
            s = x @ q
            order = [j for j in np.lexsort((np.arange(len(x)), -s))
                     if not (setup.self_search and owner[j] == xk and row[j] == i)][:k]  # fmt: skip
            lq = set(labels[qk][i])
            rel = [owner[j] == xk and bool(lq & set(labels[xk][row[j]])) for j in order]
            n = sum(bool(lq & set(lab)) for lab in labels[xk]) - int(setup.self_search)
            if min(k, n) == 0:
                skipped += 1
                continue
            vals["top_1"].append(rel[0])
            vals[f"mp_{k}"].append(sum(rel[: min(k, n)]) / min(k, n))
            vals[f"map_{k}"].append(
                sum(sum(rel[: r + 1]) / (r + 1) * rel[r] for r in range(k)) / min(k, n)
            )
        proto = "common" if merged else "separate"
        for name, v in vals.items():
            out[f"{d}:{proto}:{setups}:{name}"] = float(np.mean(v))
        out[f"{d}:{proto}:{setups}:skipped_queries"] = float(skipped)
    return out


def _random_uned(seed=0, dim=8):
    rng = np.random.default_rng(seed)
    sizes = {
        "cars/test": 60,
        "inshop/test": 40,
        "inshop/index": 50,
        "gldv2/test": 20,
        "gldv2/index": 70,
    }
    descr, labels = {}, {}
    for key, n in sizes.items():
        x = rng.standard_normal((n, dim)).astype(np.float32)
        descr[key] = x / np.linalg.norm(x, axis=1, keepdims=True)
        if key == "gldv2/test":  # multi-label queries, some with no label in the index
            labels[key] = [tuple(rng.integers(0, 30, rng.integers(1, 4))) for _ in range(n)]
        else:
            labels[key] = [(int(c),) for c in rng.integers(0, 12, n)]
    return descr, labels


@pytest.mark.parametrize("backend", ["faiss", "jax"])
def test_matches_per_query_reference(backend):
    descr, labels = _random_uned()
    domains = ["cars", "inshop", "gldv2"]
    got = _run(descr, labels, domains=domains, k=5, backend=backend)
    want = {**_reference(descr, labels, domains, "test_knn", False, 5),
            **_reference(descr, labels, domains, "test_knn", True, 5)}  # fmt: skip
    for key, value in want.items():
        assert got[key] == pytest.approx(value), key
    for proto in ("separate", "common"):
        mean = np.mean([want[f"{d}:{proto}:test_knn:mp_5"] for d in domains])
        assert got[f"average:{proto}:test_knn:mp_5"] == pytest.approx(mean)


def test_required_splits_and_eval_plan():
    keys = evaluate.required_splits(["cars", "met", "inshop"], ["val_knn", "test_knn"])
    assert keys == [
        "cars/val", "met/val", "met/small_index", "inshop/val",
        "cars/test", "met/test", "met/index", "inshop/test", "inshop/index",
    ]  # fmt: skip
    plan = settings.eval_plan(config_knn_descr_eval.get_config())
    assert plan.separate_knns == ("test_knn",) and plan.merged_knns == ("test_knn",)
    assert plan.domains[0] == "cars" and len(plan.domains) == 8 and plan.k == 5
    c = config_knn_descr_eval.get_config()
    c.disabled_separate_knns = "train_knn"
    c.knn_eval_names = "sop,cars"
    plan = settings.eval_plan(c)
    assert plan.separate_knns == ("val_knn", "test_knn") and plan.knn_names == (
        "val_knn",
        "test_knn",
    )
    assert plan.domains == ("sop", "cars")
    c.disabled_merged_knns = c.disabled_separate_knns = "train_knn,val_knn,test_knn"
    with pytest.raises(ValueError, match="Nothing to evaluate"):
        settings.eval_plan(c)
    assert isinstance(c, ml_collections.ConfigDict)


def _bad(**changes):
    descr = {k: v.copy() for k, v in HAND_DESCR.items()}
    labels = dict(HAND_LABELS)
    for key, value in changes.items():
        descr[key.replace("__", "/")] = value
    return descr, labels


@pytest.mark.parametrize(
    "change, message",
    [
        ({"cars__test": _unit(0, 10, 30, 100)},
         r"'cars', split 'test'.*4 descriptor rows.*5 images"),
        ({"inshop__index": np.array([[1, 0], [np.nan, 0], [0, 1]], np.float32)},
         r"'inshop', split 'index'.*1 rows hold NaN or inf \(first: row 1\)"),
        ({"inshop__test": np.array([[1, 0], [np.inf, 0]], np.float32)},
         r"'inshop', split 'test'.*NaN or inf"),
        ({"inshop__index": np.ones((3, 3), np.float32)},
         r"'inshop', split 'index'.*3-d but 'cars/test' is 2-d"),
        ({"cars__test": np.array([[1, 0], [0.6, 0.8], [0, 0], [0, 1], [1e-13, 0]], np.float32)},
         r"'cars', split 'test'.*2 rows have norm below 1e-12 \(first: row 2\).*no direction"),
        ({"inshop__index": _unit(45, 190, 205) * (1 + 1j)},
         r"'inshop', split 'index'.*complex"),
        ({"inshop__index": np.array([[1, 0], [3e38, 0], [0, 1]], np.float32)},
         r"'inshop', split 'index'.*1 rows hold values beyond \+-1e\+06 \(first: row 1\)"),
        ({"inshop__test": np.array([["1", "0"], ["0", "1"]])},
         r"'inshop', split 'test'.*<U1 values, not numbers"),
        ({"mars__test": _unit(0)}, r"unknown domain 'mars'"),
        ({"cars__tset": _unit(0)}, r"unknown split 'tset' of domain 'cars'"),
    ],
)  # fmt: skip
def test_bad_inputs_fail_before_search(change, message, monkeypatch):
    def no_search(*a, **k):
        raise AssertionError("searched despite bad input")

    monkeypatch.setattr(evaluate, "search", no_search)
    with pytest.raises(ValueError, match=message) as e:
        _run(*_bad(**change))
    assert "\n" not in str(e.value)


def test_missing_split_names_setup():
    descr = {k: v for k, v in HAND_DESCR.items() if k != "inshop/index"}
    with pytest.raises(
        ValueError, match=r"'inshop', split 'index' \(index of test_knn\).*no descriptors"
    ):
        _run(descr)
    labels = {k: v for k, v in HAND_LABELS.items() if k != "cars/test"}
    with pytest.raises(ValueError, match=r"'cars', split 'test'.*no labels"):
        _run(HAND_DESCR, labels)
    with pytest.raises(ValueError, match="Unknown UnED domain"):
        _run(domains=["cars", "carz"])
