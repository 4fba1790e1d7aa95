"""UDON's dynamic sampler on a made-up loss history (docs/udon-method.md §3)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from universal_embedding.train import dynamic_sampler, samplers

DOMAINS = ("food2k", "cars", "sop")
BATCH = 4


def test_weights_are_proportional_to_window_means_absent_domains_keep_theirs():
    old = np.array([0.2, 0.3, 0.5])
    # food2k: 2 steps of 4 images with mean loss 3 and 1 -> 2; cars: mean 1; sop absent
    new = dynamic_sampler.updated_weights(old, [(3 + 1) * BATCH, 1 * BATCH, 0.0], [8, 4, 0])
    # present domains: 2/3 and 1/3; sop keeps 0.5; renormalised by 1.5
    np.testing.assert_allclose(new, [2 / 3 / 1.5, 1 / 3 / 1.5, 0.5 / 1.5], rtol=1e-12)
    all_present = dynamic_sampler.updated_weights(old, [4.0, 2.0, 2.0], [1, 1, 2])
    np.testing.assert_allclose(all_present, [4 / 7, 2 / 7, 1 / 7], rtol=1e-12)
    np.testing.assert_array_equal(dynamic_sampler.updated_weights(old, [0, 0, 0], [0, 0, 0]), old)


def test_redrawn_schedule_counts_and_permutation():
    weights = np.array([0.45, 0.35, 0.2])
    schedule = dynamic_sampler.redraw_schedule(weights, 101, seed=7)
    # floor(101 * w) for all but the last domain, which takes the rest
    assert np.bincount(schedule, minlength=3).tolist() == [45, 35, 21]
    ordered = np.repeat([0, 1, 2], [45, 35, 21])
    perm = np.asarray(jax.random.permutation(jax.random.PRNGKey(7), 101))
    np.testing.assert_array_equal(schedule, ordered[perm])
    assert not np.array_equal(schedule, dynamic_sampler.redraw_schedule(weights, 101, seed=8))


def make_sampler(total=30, every=10, logit_type="teacher", **options):
    initial = np.arange(total) % len(DOMAINS)  # round robin
    return dynamic_sampler.DynamicSampler(
        DOMAINS,
        initial,
        np.full(3, 1 / 3),
        every=every,
        logit_type=logit_type,
        batch_size=BATCH,
        **options,
    )


def fake_loss(step: int, domain: int) -> dict[str, np.float32]:
    """A made-up history: domain 1 learns slowest, the student loss is a constant."""
    teacher = [1.0, 3.0, 2.0][domain] + 0.01 * step
    return {
        "teacher_classifier_loss": np.float32(teacher),
        "universal_student_classifier_loss": np.float32(1.0),
    }


def run(sampler, start: int, stop: int, log: dict) -> list[int]:
    """The trainer's calls for steps [start, stop): before_step, domain_at, record."""
    drawn = []
    for k in range(start, stop):
        scalars = sampler.before_step(k)
        if scalars:
            log[k + 1] = scalars
        d = sampler.domain_at(k)
        drawn.append(d)
        sampler.record(d, fake_loss(k, d))
    return drawn


def window_means(drawn: list[int], first: int, last: int) -> np.ndarray:
    """Mean made-up teacher loss per domain over loop steps [first, last)."""
    losses = [[] for _ in DOMAINS]
    for k in range(first, last):
        losses[drawn[k]].append(float(fake_loss(k, drawn[k])["teacher_classifier_loss"]))
    return np.array([np.mean(v) for v in losses])


def test_updates_every_n_steps_from_the_steps_since_the_last_update():
    sampler, log = make_sampler(), {}
    assert sampler.initial_scalars() == {f"sampling_weights/{d}": 1 / 3 for d in DOMAINS}
    drawn = run(sampler, 0, 30, log)
    assert sorted(log) == [10, 20, 30]  # before steps s = 10, 20, 30 (1-based)
    assert drawn[:9] == [k % 3 for k in range(9)]  # round robin until the first update
    first = window_means(drawn, 0, 9)  # steps s = 1..9
    np.testing.assert_allclose(
        [log[10][f"sampling_weights/{d}"] for d in DOMAINS], first / first.sum(), rtol=1e-6
    )
    np.testing.assert_array_equal(
        drawn[9:19], dynamic_sampler.redraw_schedule(first / first.sum(), 30, seed=10)[9:19]
    )
    second = window_means(drawn, 9, 19)  # exactly the steps s = 10..19
    present = second[~np.isnan(second)]
    assert len(present) == 3
    np.testing.assert_allclose(
        [log[20][f"sampling_weights/{d}"] for d in DOMAINS], second / second.sum(), rtol=1e-6
    )
    assert log[20]["sampling_weights/cars"] > log[20]["sampling_weights/food2k"]
    assert sampler.positions_at(30).tolist() == np.bincount(drawn, minlength=3).tolist()


def test_student_logit_type_uses_the_student_loss():
    sampler, log = make_sampler(logit_type="universal_student"), {}
    run(sampler, 0, 10, log)
    assert log[10] == {f"sampling_weights/{d}": pytest.approx(1 / 3) for d in DOMAINS}


MODES = [
    {},  # since_update, JAX's default draw
    {"window": "original", "summary_every": 4},
    {"window": "original", "summary_every": 4, "partitionable": False},
    {"window": "since_update", "partitionable": False},
]


@pytest.mark.parametrize("options", MODES)
@pytest.mark.parametrize("cut", [5, 9, 10, 14])
def test_checkpoint_and_restore_give_the_same_draws(cut, options):
    full_log, cut_log = {}, {}
    full = run(make_sampler(**options), 0, 30, full_log)
    first = make_sampler(**options)
    head = run(first, 0, cut, cut_log)
    extra = first.checkpoint_extra(cut)
    resumed = make_sampler(**options)
    resumed.restore(extra, cut, "W")
    assert head + run(resumed, cut, 30, cut_log) == full
    assert cut_log == full_log and sorted(full_log) == [10, 20, 30]


def test_original_rule_clears_after_step_1_and_each_summary_step():
    # the original writes its summary (and empties the buffer) after step 1 and steps t % L == 1
    assert [t for t in range(1, 17) if dynamic_sampler.original_window_cleared(t, 5)] == [
        1, 6, 11, 16
    ]  # fmt: skip
    assert [t for t in range(1, 6) if dynamic_sampler.original_window_cleared(t, 1)] == [1]


def windows_seen(monkeypatch, **options) -> list[tuple[float, int]]:
    """(sum of the step numbers, number of steps) of each update's loss window, 15 steps with an
    update every 3: the made-up loss of (1-based) step s is s, for every domain."""
    seen = []
    real = dynamic_sampler.updated_weights

    def spy(old, loss_sums, counts):
        seen.append((float(np.sum(loss_sums)) / BATCH, int(np.sum(counts)) // BATCH))
        return real(old, loss_sums, counts)

    monkeypatch.setattr(dynamic_sampler, "updated_weights", spy)
    sampler = make_sampler(total=15, every=3, **options)
    for k in range(15):
        sampler.before_step(k)
        d = sampler.domain_at(k)
        sampler.record(d, {"teacher_classifier_loss": np.float32(k + 1)})
    return seen


def test_original_window_sequence_on_a_made_up_history(monkeypatch):
    # updates before s = 3, 6, 9, 12, 15; the original's buffer is emptied after s = 1, 6, 11
    # (log_summary_steps 5), so the windows are {2}, {2,3,4,5} (reaching back before the update
    # at 3), {7,8}, {} (emptied after 11: the weights stay) and {12,13,14}
    original = windows_seen(monkeypatch, window="original", summary_every=5)
    assert original == [(2, 1), (14, 4), (15, 2), (0, 0), (39, 3)]
    # since_update: {1,2}, {3,4,5}, {6,7,8}, {9,10,11}, {12,13,14}
    assert windows_seen(monkeypatch) == [(3, 2), (12, 3), (21, 3), (30, 3), (39, 3)]


def test_sampler_reads_the_loss_without_label_smoothing_when_the_step_gives_it():
    sampler = make_sampler(every=4)
    for k in range(3):
        sampler.before_step(k)
        d = sampler.domain_at(k)  # round robin: 0, 1, 2
        smoothed = np.float32(5.0)  # the same for all: would give 1/3 each
        sampler.record(
            d,
            {"teacher_classifier_loss": smoothed,
             "teacher_classifier_loss_unsmoothed": np.float32([1.0, 2.0, 1.0][d])},
        )  # fmt: skip
    log = sampler.before_step(3)  # the update before s = 4
    assert [log[f"sampling_weights/{d}"] for d in DOMAINS] == pytest.approx([0.25, 0.5, 0.25])


def test_unpartitioned_draw_keeps_the_counts_in_the_original_jax_order():
    weights = np.array([0.45, 0.35, 0.2])
    old = dynamic_sampler.redraw_schedule(weights, 101, seed=7, partitionable=False)
    assert np.bincount(old, minlength=3).tolist() == [45, 35, 21]
    with jax.threefry_partitionable(False):
        perm = np.asarray(jax.random.permutation(jax.random.PRNGKey(7), 101))
    np.testing.assert_array_equal(old, np.repeat([0, 1, 2], [45, 35, 21])[perm])
    assert not np.array_equal(old, dynamic_sampler.redraw_schedule(weights, 101, seed=7))
    assert jax.config.jax_threefry_partitionable  # the setting is restored


def test_restore_refuses_other_window_options():
    first = make_sampler(window="original", summary_every=4)
    run(first, 0, 12, {})
    with pytest.raises(ValueError, match="sampler_window='original'.*new --workdir"):
        make_sampler().restore(first.checkpoint_extra(12), 12, "W")
    with pytest.raises(ValueError, match="sampler_threefry_partitionable=True"):
        make_sampler(partitionable=False).restore(make_sampler().checkpoint_extra(0), 0, "W")


def test_restore_refuses_a_checkpoint_without_sampler_state():
    static = samplers.StaticSampler(np.arange(30) % 3, 3)
    with pytest.raises(ValueError, match="no dynamic-sampler state"):
        make_sampler().restore(static.checkpoint_extra(6), 6, "W")


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="update_sampler_logit_type"):
        make_sampler(logit_type="student")
    with pytest.raises(ValueError, match="update_sampler_every_steps"):
        make_sampler(every=0)
    with pytest.raises(ValueError, match="sampler_window='buffer'; valid: since_update, orig"):
        make_sampler(window="buffer")
