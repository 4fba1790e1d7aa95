"""UDON's loss terms against numpy computations of docs/udon-method.md §2 on fixed inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from universal_embedding import train_settings
from universal_embedding.configs import base, config_train_udon
from universal_embedding.train import udon_losses

B, C, DT, DS = 16, 7, 12, 6
TOL = {"rtol": 1e-6, "atol": 1e-6}


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def inputs():
    rng = np.random.default_rng(0)
    t = _unit(rng.normal(size=(B, DT))).astype(np.float32)
    s = _unit(rng.normal(size=(B, DS))).astype(np.float32)
    wt = _unit(rng.normal(size=(C, DT))).astype(np.float32)
    ws = _unit(rng.normal(size=(C, DS))).astype(np.float32)
    labels = rng.integers(0, C, size=B).astype(np.int32)
    return {"t": t, "s": s, "cos_t": t @ wt.T, "cos_s": s @ ws.T, "labels": labels}


def np_log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def np_ce(cos, labels, scale=16.0):
    """mean_i -log softmax(scale * cos_i)[y_i]."""
    return float(np.mean(-np_log_softmax(scale * cos)[np.arange(len(labels)), labels]))


def np_kl(cos_t, cos_s, tau_t, tau_s):
    """mean_i sum_c p_T (log p_T - log p_S)."""
    log_pt, log_ps = np_log_softmax(cos_t / tau_t), np_log_softmax(cos_s / tau_s)
    return float(np.mean(np.sum(np.exp(log_pt) * (log_pt - log_ps), axis=-1)))


def np_relational_original(s, t, devices):
    """The original per device: (D/4) * (1/n) * sum_ij (S_ij - T_ij)^2, pmean over devices."""
    per_device = []
    for ss, tt in zip(np.split(s, devices), np.split(t, devices), strict=True):
        ss, tt = ss.astype(np.float64), tt.astype(np.float64)
        diff = ss @ ss.T - tt @ tt.T
        per_device.append(devices / 4 * np.sum(diff**2) / len(ss))
    return float(np.mean(per_device))


def udon_cfg(**overrides) -> udon_losses.UdonLossConfig:
    c = config_train_udon.add_udon_fields(base.get_config())
    for key, value in overrides.items():
        c.loss[key] = value
    return train_settings.udon_loss(c.loss)


def test_config_fields_have_the_original_defaults():
    cfg = udon_cfg()
    assert cfg.classif_losses_on == ("teacher", "universal_student")
    assert (cfg.temperature_teacher, cfg.temperature_student) == (0.1, 0.1)
    assert cfg.weights() == dict.fromkeys(udon_losses.TERMS, 1.0)
    assert cfg.scale == 16.0 and cfg.loss_type == "normface" and cfg.margin == 0.0
    assert cfg.distill_grads_to_backbone and cfg.distill_udon_simils_groups == 4


def test_classification_terms(inputs):
    cfg = udon_cfg()
    for cos in (inputs["cos_t"], inputs["cos_s"]):
        got = udon_losses.classification(jnp.asarray(cos), inputs["labels"], cfg)
        np.testing.assert_allclose(float(got), np_ce(cos, inputs["labels"]), **TOL)


@pytest.mark.parametrize("taus", [(0.1, 0.1), (0.05, 0.2)])
def test_logit_distillation_is_kl_of_tempered_cosines(inputs, taus):
    got = udon_losses.logit_distillation(inputs["cos_t"], inputs["cos_s"], *taus)
    np.testing.assert_allclose(float(got), np_kl(inputs["cos_t"], inputs["cos_s"], *taus), **TOL)


def test_logit_distillation_stops_the_teacher_gradient(inputs):
    grad_t, grad_s = jax.grad(udon_losses.logit_distillation, argnums=(0, 1))(
        jnp.asarray(inputs["cos_t"]), jnp.asarray(inputs["cos_s"]), 0.1, 0.1
    )
    assert not np.any(np.asarray(grad_t)) and np.any(np.asarray(grad_s))


def test_similarity_distillation_equals_the_original_on_four_devices(inputs):
    s, t = inputs["s"], inputs["t"]
    got = float(udon_losses.similarity_distillation(s, t, groups=4))
    np.testing.assert_allclose(got, np_relational_original(s, t, devices=4), **TOL)
    # (B/4) * mean over each group's n^2 entries, diagonal included
    groups = [(a @ a.T - b @ b.T) ** 2 for a, b in zip(np.split(s, 4), np.split(t, 4), strict=True)]
    np.testing.assert_allclose(got, B / 4 * np.mean(groups), **TOL)
    # one group: the whole batch, (B/4) * mean over B^2 entries
    whole = float(udon_losses.similarity_distillation(s, t, groups=1))
    np.testing.assert_allclose(whole, B / 4 * np.mean((s @ s.T - t @ t.T) ** 2), **TOL)
    grad_t = jax.grad(udon_losses.similarity_distillation, argnums=1)(s, t, 4)
    assert not np.any(np.asarray(grad_t))


def test_similarity_distillation_does_not_depend_on_the_device_count(inputs):
    """The global batch sharded over 2 devices gives the 1-device value."""
    from universal_embedding.distributed import mesh as mesh_lib

    mesh = mesh_lib.make_mesh()
    assert mesh.devices.size == 2
    sharded = mesh_lib.shard_batch({"s": inputs["s"], "t": inputs["t"]}, mesh)
    fn = jax.jit(udon_losses.similarity_distillation, static_argnums=2)
    on_two = float(fn(sharded["s"], sharded["t"], 4))
    on_one = float(udon_losses.similarity_distillation(inputs["s"], inputs["t"], 4))
    np.testing.assert_allclose(on_two, on_one, **TOL)


def test_groups_must_divide_the_batch(inputs):
    with pytest.raises(ValueError, match="distill_udon_simils_groups=3"):
        udon_losses.similarity_distillation(inputs["s"], inputs["t"], groups=3)


def test_terms_and_weighted_total(inputs):
    cfg = udon_cfg(
        classif_udon_teacher_weight=0.5,
        classif_udon_universal_student_weight=2.0,
        distill_udon_logits_weight=1.5,
        distill_udon_simils_weight=3.0,
        distill_udon_logits_temperature=ml_collections.ConfigDict(
            {"teacher": 0.2, "universal_student": 0.1}
        ),
    )
    x = inputs
    terms = udon_losses.loss_terms(
        x["cos_t"], x["cos_s"], x["cos_s"], x["t"], x["s"], x["labels"], cfg
    )
    want = {
        "teacher_classifier_loss": np_ce(x["cos_t"], x["labels"]),
        "universal_student_classifier_loss": np_ce(x["cos_s"], x["labels"]),
        "distill_logits_loss": np_kl(x["cos_t"], x["cos_s"], 0.2, 0.1),
        "distill_simils_loss": np_relational_original(x["s"], x["t"], devices=4),
    }
    for key, value in want.items():
        np.testing.assert_allclose(float(terms[key]), value, err_msg=key, **TOL)
    weights = (0.5, 2.0, 1.5, 3.0)
    total = sum(w * want[k] for w, k in zip(weights, udon_losses.TERMS, strict=True)) / 7.0
    np.testing.assert_allclose(float(udon_losses.total_loss(terms, cfg)), total, **TOL)
    prec = np.mean(np.argmax(x["cos_t"], axis=-1) == x["labels"])
    assert float(terms["teacher_precision_at_1"]) == pytest.approx(prec)


def test_disabled_terms_leave_the_mean(inputs):
    cfg = udon_cfg(classif_losses_on="teacher", distill_udon_batch_simils=False)
    assert list(cfg.weights()) == ["teacher_classifier_loss", "distill_logits_loss"]
    x = inputs
    terms = udon_losses.loss_terms(
        x["cos_t"], x["cos_s"], x["cos_s"], x["t"], x["s"], x["labels"], cfg
    )
    want = (np_ce(x["cos_t"], x["labels"]) + np_kl(x["cos_t"], x["cos_s"], 0.1, 0.1)) / 2
    np.testing.assert_allclose(float(udon_losses.total_loss(terms, cfg)), want, **TOL)
    with pytest.raises(ValueError, match="classif_losses_on"):
        udon_cfg(classif_losses_on="teacher,student")


def np_smoothed_ce(cos, labels, eps, scale=16.0):
    """mean_i -sum_c q_c log softmax(scale * cos_i)_c, q = (1 - eps) onehot + eps / C."""
    q = np.full(cos.shape, eps / cos.shape[-1]) + (1 - eps) * np.eye(cos.shape[-1])[labels]
    return float(np.mean(-np.sum(q * np_log_softmax(scale * cos), axis=-1)))


def test_label_smoothing_adds_the_unsmoothed_losses_the_sampler_reads(inputs):
    x = inputs
    plain = udon_losses.loss_terms(
        x["cos_t"], x["cos_s"], x["cos_s"], x["t"], x["s"], x["labels"], udon_cfg()
    )
    assert not [k for k in plain if k.endswith("_unsmoothed")]  # no smoothing: nothing added
    terms = udon_losses.loss_terms(
        x["cos_t"], x["cos_s"], x["cos_s"], x["t"], x["s"], x["labels"],
        udon_cfg(label_smoothing=0.1),
    )  # fmt: skip
    for name, cos in (("teacher", x["cos_t"]), ("universal_student", x["cos_s"])):
        got, got_plain = (
            terms[f"{name}_classifier_loss"],
            terms[f"{name}_classifier_loss_unsmoothed"],
        )
        np.testing.assert_allclose(float(got), np_smoothed_ce(cos, x["labels"], 0.1), **TOL)
        np.testing.assert_allclose(float(got_plain), np_ce(cos, x["labels"]), **TOL)
        assert float(got_plain) == float(plain[f"{name}_classifier_loss"])
