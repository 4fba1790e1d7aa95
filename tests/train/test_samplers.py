"""Domain schedules: exact per-domain step counts, determinism, resume positions."""

import numpy as np
import pytest

from universal_embedding.data import registry
from universal_embedding.train import samplers

DOMAINS = ("cars", "sop", "inshop")


def test_round_robin_cycles():
    got = samplers.domain_schedule("round_robin", DOMAINS, [5, 5, 5], 7, seed=0)
    np.testing.assert_array_equal(got, [0, 1, 2, 0, 1, 2, 0])


def test_dataset_size_largest_remainder_counts():
    # quotas 10 * (1, 2, 3) / 6 = 1.667, 3.333, 5 -> floors 1, 3, 5, leftover 1 to domain 0
    got = samplers.domain_schedule("dataset_size", DOMAINS, [1, 2, 3], 10, seed=3)
    np.testing.assert_array_equal(np.bincount(got, minlength=3), [2, 3, 5])


def test_balanced_counts_ties_go_to_lower_position():
    got = samplers.domain_schedule("balanced", DOMAINS, [100, 1, 1], 10, seed=1)
    np.testing.assert_array_equal(np.bincount(got, minlength=3), [4, 3, 3])


def test_specialist_shares_from_config_string():
    shares = samplers.parse_shares("0.5, 0.25,0.25")
    got = samplers.domain_schedule("specialist_top_steps", DOMAINS, [1, 1, 1], 10, 0, shares)
    # 5, 2.5, 2.5 -> 5, 2, 2 + one leftover step to the first tied remainder (domain 1)
    np.testing.assert_array_equal(np.bincount(got, minlength=3), [5, 3, 2])
    only_first = samplers.domain_schedule(
        "specialist_top_steps", DOMAINS, [1, 1, 1], 6, 0, [1, 0, 0]
    )
    np.testing.assert_array_equal(only_first, [0] * 6)


def test_specialist_needs_one_share_per_domain():
    with pytest.raises(ValueError, match="one share per trained domain"):
        samplers.domain_schedule("specialist_top_steps", DOMAINS, [1, 1, 1], 6, 0, [1, 1])


def test_real_uned_sizes_exact_and_close_to_proportional():
    sizes = [d.split_size("train") for d in registry.DOMAINS]
    names = registry.DOMAIN_NAMES
    n = 155_000
    got = samplers.domain_schedule("dataset_size", names, sizes, n, seed=0)
    counts = np.bincount(got, minlength=8)
    assert counts.sum() == n
    exact = n * np.asarray(sizes) / sum(sizes)
    assert np.all(np.abs(counts - exact) < 1.0)
    np.testing.assert_array_equal(counts, samplers.step_counts("dataset_size", 8, sizes, n))


def test_shuffled_schedules_are_seeded():
    a = samplers.domain_schedule("dataset_size", DOMAINS, [1, 2, 3], 60, seed=7)
    b = samplers.domain_schedule("dataset_size", DOMAINS, [1, 2, 3], 60, seed=7)
    c = samplers.domain_schedule("dataset_size", DOMAINS, [1, 2, 3], 60, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert not np.array_equal(a, np.sort(a))  # actually shuffled
    np.testing.assert_array_equal(np.bincount(a), np.bincount(c))


def test_domain_positions_counts_batches_before_step():
    schedule = np.array([0, 1, 0, 2, 0])
    np.testing.assert_array_equal(samplers.domain_positions(schedule, 0, 3), [0, 0, 0])
    np.testing.assert_array_equal(samplers.domain_positions(schedule, 4, 3), [2, 1, 1])
    np.testing.assert_array_equal(samplers.domain_positions(schedule, 5), [3, 1, 1])
    np.testing.assert_array_equal(samplers.domain_positions([0, 0], 2, 3), [2, 0, 0])
    with pytest.raises(ValueError, match="outside the schedule"):
        samplers.domain_positions(schedule, 6, 3)


def test_unknown_strategy_lists_valid_ones():
    with pytest.raises(ValueError, match="random.*round_robin"):
        samplers.domain_schedule("random", DOMAINS, [1, 1, 1], 3, 0)


def test_largest_remainder_exact_for_decimal_shares():
    np.testing.assert_array_equal(samplers.largest_remainder([0.1, 0.2, 0.7], 10), [1, 2, 7])
    np.testing.assert_array_equal(samplers.largest_remainder([1, 1, 1], 0), [0, 0, 0])
