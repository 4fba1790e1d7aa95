"""Loss values against numbers worked out by hand with `math` (2-class examples)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from universal_embedding.train import losses

COS = np.array([[0.6, 0.8]], np.float32)  # one example, two classes
LABEL = np.array([0], np.int32)
S = 16.0


def _two_class_ce(target_logit: float, other_logit: float) -> float:
    # -log(e^t / (e^t + e^o)) = log(1 + e^(o - t))
    return math.log1p(math.exp(other_logit - target_logit))


def test_normface_by_hand():
    want = _two_class_ce(S * 0.6, S * 0.8)  # log(1 + e^3.2) = 3.2400 (3.2 + log1p(e^-3.2))
    got = losses.classification_loss(COS, LABEL, loss_type="normface", scale=S)
    assert got == pytest.approx(want, rel=1e-6)
    assert want == pytest.approx(3.2 + 0.039955, abs=1e-5)


def test_cosface_subtracts_margin_from_target_only():
    m = 0.35
    want = _two_class_ce(S * (0.6 - m), S * 0.8)  # log(1 + e^8.8)
    got = losses.classification_loss(COS, LABEL, loss_type="cosface", scale=S, margin=m)
    assert got == pytest.approx(want, rel=1e-6)
    logits = losses.margin_logits(COS, LABEL, loss_type="cosface", margin=m)
    np.testing.assert_allclose(logits, [[0.25, 0.8]], atol=1e-7)


def test_arcface_adds_angle_margin():
    m = 0.5
    target = math.cos(math.acos(0.6) + m)  # 0.6 cos .5 - 0.8 sin .5 = 0.1430...
    want = _two_class_ce(S * target, S * 0.8)
    got = losses.classification_loss(COS, LABEL, loss_type="arcface", scale=S, margin=m)
    assert got == pytest.approx(want, rel=1e-5)
    logits = losses.margin_logits(COS, np.array([1]), loss_type="arcface", margin=m)
    np.testing.assert_allclose(logits, [[0.6, math.cos(math.acos(0.8) + m)]], atol=1e-6)


def test_arcface_beyond_pi_continues_linearly():
    m = 0.5
    c = -0.95  # acos(-0.95) + 0.5 > pi: use c - m sin(pi - m)
    got = losses.arcface_target(jnp.array([c]), m)
    assert float(got[0]) == pytest.approx(c - m * math.sin(math.pi - m), abs=1e-6)


def test_arcface_finite_gradients_near_plus_minus_one():
    edge = [1.0, -1.0, 0.9999999, -0.9999999, 0.0]
    cos = jnp.array([[c, 0.1] for c in edge], jnp.float32)  # target class 0 in every row
    labels = jnp.zeros(len(edge), jnp.int32)

    def f(x):
        return losses.classification_loss(x, labels, loss_type="arcface", scale=S, margin=0.5)

    value, grad = jax.jit(jax.value_and_grad(f))(cos)
    assert np.isfinite(float(value))
    assert np.all(np.isfinite(np.asarray(grad)))
    # cos(0 + m) = cos m; at theta = pi the linear continuation -1 - m sin(pi - m)
    got = losses.arcface_target(jnp.array([1.0, -1.0]), 0.5)
    want = [math.cos(0.5), -1.0 - 0.5 * math.sin(math.pi - 0.5)]
    np.testing.assert_allclose(got, want, atol=1e-3)


def test_label_smoothing_by_hand():
    ls = 0.1
    t, o = S * 0.6, S * 0.8
    log_p_t = t - math.log(math.exp(t) + math.exp(o))
    log_p_o = o - math.log(math.exp(t) + math.exp(o))
    want = -((1 - ls + ls / 2) * log_p_t + (ls / 2) * log_p_o)
    got = losses.classification_loss(COS, LABEL, scale=S, label_smoothing=ls)
    assert got == pytest.approx(want, rel=1e-6)


def test_mean_over_batch_and_zero_margin_is_normface():
    cos = np.array([[0.6, 0.8], [0.9, -0.2]], np.float32)
    labels = np.array([0, 0])
    want = (_two_class_ce(9.6, 12.8) + _two_class_ce(14.4, -3.2)) / 2
    for kind in losses.LOSS_TYPES:
        got = losses.classification_loss(cos, labels, loss_type=kind, scale=S, margin=0.0)
        assert got == pytest.approx(want, rel=1e-6)


def test_precision_at_1():
    cos = np.array([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3], [0.2, 0.2, 0.7], [0.4, 0.4, 0.1]])
    labels = np.array([1, 2, 2, 0])  # right, wrong, right, tie -> lowest index 0: right
    assert float(losses.precision_at_1(cos, labels)) == pytest.approx(0.75)


@pytest.mark.parametrize(
    "loss_type, margin, smoothing",
    [("normface", 0.0, 0.0), ("cosface", 0.35, 0.1), ("arcface", 0.5, 0.2)],
)
def test_where_is_the_loss_over_the_marked_columns_alone(loss_type, margin, smoothing):
    rng = np.random.default_rng(0)
    cos = rng.uniform(-1, 1, size=(4, 9)).astype(np.float32)
    columns = (np.arange(9) >= 3) & (np.arange(9) < 7)  # a head of 4 classes at offset 3
    labels = np.array([3, 6, 4, 4], np.int32)
    kw = dict(loss_type=loss_type, scale=S, margin=margin, label_smoothing=smoothing)

    def masked(c):
        return losses.classification_loss(c, labels, where=columns, **kw)

    def alone(c):
        return losses.classification_loss(c, labels - 3, **kw)

    assert float(masked(cos)) == pytest.approx(float(alone(cos[:, 3:7])), rel=1e-6)
    grad = np.asarray(jax.grad(masked)(cos))
    np.testing.assert_array_equal(grad[:, ~columns], 0.0)  # exactly zero outside
    np.testing.assert_allclose(grad[:, columns], jax.grad(alone)(cos[:, 3:7]), rtol=1e-6)


def test_precision_at_1_over_marked_columns():
    cos = np.array([[0.9, 0.5, 0.1], [0.2, 0.3, 0.8]], np.float32)
    labels = np.array([1, 1])  # row 0: column 0 is higher but not marked
    marked = np.array([False, True, True])
    assert float(losses.precision_at_1(cos, labels, where=marked)) == pytest.approx(0.5)
    assert float(losses.precision_at_1(cos, labels)) == 0.0


def test_unknown_loss_type_is_named():
    with pytest.raises(ValueError, match="sphereface.*normface, cosface, arcface"):
        losses.classification_loss(COS, LABEL, loss_type="sphereface")
