"""Optimiser: two learning rates, decoupled weight decay, bit-exact freeze, schedules, clipping."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from universal_embedding import train_settings
from universal_embedding.configs import base
from universal_embedding.train import optimizers


def _config(**overrides) -> optimizers.OptimizerSettings:
    """The base config's optimiser settings, weight decay 0 unless overridden."""
    c = base.get_config()
    c.weight_decay = 0.0
    for k, v in overrides.items():
        setattr(c, k, v)
    return train_settings.optimizer_settings(c)


def _params():
    return {
        "backbone": {"w": jnp.array([1.0, -0.0, 0.0, -2.5])},  # -0.0 must survive a frozen step
        "projection": {"kernel": jnp.full((2, 2), 0.5), "bias": jnp.zeros(2)},
        "heads": {"cars": {"kernel": jnp.full((2, 3), 0.25)}},
    }


def _ones_grads(params):
    return jax.tree.map(jnp.ones_like, params)


def _bits(tree):
    return [np.asarray(x).view(np.uint32).copy() for x in jax.tree.leaves(tree)]


def _run(tx, params, num_steps, grads_fn=_ones_grads):
    @jax.jit
    def step(params, state):
        updates, state = tx.update(grads_fn(params), state, params)
        return optax.apply_updates(params, updates), state

    state = tx.init(params)
    history = [params]
    for _ in range(num_steps):
        params, state = step(params, state)
        history.append(params)
    return history


def test_labels_split_heads_from_backbone_and_projection():
    labels = optimizers.param_labels(_params())
    assert labels["backbone"]["w"] == "backbone"
    assert labels["projection"]["bias"] == "backbone"
    assert labels["heads"]["cars"]["kernel"] == "heads"
    with pytest.raises(ValueError, match="'stem'"):
        optimizers.param_labels({"stem": {"w": jnp.ones(1)}})


def test_first_adam_step_is_lr_for_heads_and_lr_times_multiplier_for_backbone():
    # Constant unit gradients: Adam's bias-corrected step is exactly lr * g / (|g| + eps).
    tx = optimizers.make_optimizer(_config(frozen_epochs=0.0), steps_per_epoch=4, total_steps=8)
    p0, p1 = _run(tx, _params(), 1)
    step = 1.0 / (1.0 + 1e-8)
    heads_delta = p0["heads"]["cars"]["kernel"] - p1["heads"]["cars"]["kernel"]
    np.testing.assert_allclose(heads_delta, 1e-3 * step, rtol=1e-4)
    np.testing.assert_allclose(p0["backbone"]["w"] - p1["backbone"]["w"], 1e-5 * step, atol=2e-7)
    np.testing.assert_allclose(
        p0["projection"]["kernel"] - p1["projection"]["kernel"], 1e-5 * step, atol=2e-7
    )


def test_frozen_epochs_leave_backbone_bit_identical_then_release_it():
    tx = optimizers.make_optimizer(_config(frozen_epochs=1.5), steps_per_epoch=2, total_steps=8)
    assert optimizers.frozen_steps(1.5, 2, 8) == 3
    hist = _run(tx, _params(), 4)
    frozen0 = {k: hist[0][k] for k in ("backbone", "projection")}
    for t in (1, 2, 3):
        frozen_t = {k: hist[t][k] for k in ("backbone", "projection")}
        for a, b in zip(_bits(frozen0), _bits(frozen_t), strict=True):
            np.testing.assert_array_equal(a, b)
        assert not np.allclose(
            hist[t]["heads"]["cars"]["kernel"], hist[t - 1]["heads"]["cars"]["kernel"]
        )
    # step 4: moments accumulated while frozen (constant grads), so the first real step is lr*mult
    np.testing.assert_allclose(hist[3]["backbone"]["w"] - hist[4]["backbone"]["w"], 1e-5, atol=2e-7)


def test_frozen_minus_one_never_moves_backbone_even_with_weight_decay():
    config = _config(frozen_epochs=-1.0, weight_decay=0.1)
    tx = optimizers.make_optimizer(config, steps_per_epoch=2, total_steps=5)
    hist = _run(tx, _params(), 5)
    for a, b in zip(_bits(hist[0]["backbone"]), _bits(hist[-1]["backbone"]), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(hist[0]["heads"]["cars"]["kernel"], hist[-1]["heads"]["cars"]["kernel"])


def test_weight_decay_is_decoupled():
    # zero gradients: Adam's part is 0, so the update is exactly -lr * wd * p
    config = _config(frozen_epochs=0.0, weight_decay=0.1)
    tx = optimizers.make_optimizer(config, steps_per_epoch=2, total_steps=5)
    p0, p1 = _run(tx, _params(), 1, grads_fn=lambda p: jax.tree.map(jnp.zeros_like, p))
    np.testing.assert_allclose(p1["heads"]["cars"]["kernel"], 0.25 - 1e-3 * 0.1 * 0.25, rtol=1e-7)
    np.testing.assert_allclose(p1["backbone"]["w"][3], -2.5 + 1e-5 * 0.1 * 2.5, rtol=1e-7)


def test_learning_rates_for_logging_constant_and_frozen():
    config = _config(frozen_epochs=1.0)
    scheds = optimizers.lr_schedules(config, steps_per_epoch=10, total_steps=70)
    assert optimizers.learning_rates(scheds, 0) == {"lr/heads": 1e-3, "lr/backbone": 0.0}
    assert optimizers.learning_rates(scheds, 9)["lr/backbone"] == 0.0
    assert optimizers.learning_rates(scheds, 10)["lr/backbone"] == pytest.approx(1e-5)
    assert optimizers.learning_rates(scheds, 69)["lr/heads"] == pytest.approx(1e-3)


def test_warmup_cosine_schedule_values():
    config = _config(lr_schedule="warmup_cosine", warmup_steps=10, frozen_epochs=0.0)
    scheds = optimizers.lr_schedules(config, steps_per_epoch=10, total_steps=110)
    heads = scheds["heads"]
    assert float(heads(0)) == 0.0
    assert float(heads(5)) == pytest.approx(0.5e-3)
    assert float(heads(10)) == pytest.approx(1e-3)
    assert float(heads(60)) == pytest.approx(0.5e-3, rel=1e-5)  # half way through the cosine
    assert float(heads(110)) == pytest.approx(0.0, abs=1e-12)
    assert float(scheds["backbone"](60)) == pytest.approx(0.5e-5, rel=1e-5)
    with pytest.raises(ValueError, match="lr_schedule 'step'"):
        optimizers.make_optimizer(_config(lr_schedule="step"), 1, 1)


def test_grad_clipping_scales_gradients_seen_by_adam():
    config = _config(frozen_epochs=0.0, grad_clip_norm=1.0)
    tx = optimizers.make_optimizer(config, steps_per_epoch=2, total_steps=5)
    params = _params()
    grads = jax.tree.map(lambda p: jnp.full_like(p, 10.0), params)
    _, state = jax.jit(tx.update)(grads, tx.init(params), params)
    n = sum(x.size for x in jax.tree.leaves(params))  # global norm = 10 sqrt(n) -> 1
    mus = optax.tree_utils.tree_get_all_with_path(state, "mu")
    leaves = [x for _, mu in mus for x in jax.tree.leaves(mu)]
    assert leaves
    for x in leaves:  # mu = (1 - b1) * clipped grad
        np.testing.assert_allclose(x, 0.1 * 10.0 / (10.0 * np.sqrt(n)), rtol=1e-5)
