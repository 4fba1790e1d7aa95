"""The results the tests of the results files, page and table share."""

import pytest

RESULTS = {
    "cars:separate:test_knn:top_1": 0.4236,
    "cars:separate:test_knn:mp_5": 0.31,
    "cars:separate:test_knn:map_5": 0.2,
    "cars:separate:test_knn:skipped_queries": 0.0,
    "sop:separate:test_knn:top_1": 0.8,
    "sop:separate:test_knn:mp_5": float("nan"),
    "sop:separate:test_knn:map_5": 0.5,
    "sop:separate:test_knn:skipped_queries": 3.0,
    "cars:common:test_knn:top_1": 0.05,
    "cars:common:test_knn:mp_5": 0.999,
    "cars:common:test_knn:map_5": 0.1,
    "cars:common:test_knn:skipped_queries": 0.0,
    "sop:common:test_knn:top_1": 0.7,
    "sop:common:test_knn:mp_5": 0.6,
    "sop:common:test_knn:map_5": 0.4,
    "sop:common:test_knn:skipped_queries": 3.0,
    "average:separate:test_knn:top_1": 0.6118,
    "average:separate:test_knn:mp_5": 0.31,
    "average:separate:test_knn:map_5": 0.35,
    "average:separate:test_knn:skipped_queries": 3.0,
    "average:common:test_knn:top_1": 0.375,
    "average:common:test_knn:mp_5": 0.7995,
    "average:common:test_knn:map_5": 0.25,
    "average:common:test_knn:skipped_queries": 3.0,
}


@pytest.fixture
def results():
    """Results of test_knn on cars and sop, both protocols (a NaN; skipped queries in sop)."""
    return dict(RESULTS)
