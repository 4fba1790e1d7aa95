"""Where UDON's gradients go (docs/udon-method.md pitfalls 1 and 2) and the step's loss value."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from universal_embedding import settings, train_settings
from universal_embedding.configs import base, config_train_udon, tiny
from universal_embedding.models import embedding_model, udon
from universal_embedding.train import udon_losses, udon_steps

CLASSES = {"cars": 5, "sop": 3}
B = 8


@pytest.fixture(scope="module")
def setup():
    c = tiny.tiny_vit(config_train_udon.add_udon_fields(base.get_config()), image_size=16)
    c.model_class, c.dataset_name = "udon_vit_with_embedding", "cars,sop"
    c.model.teacher_dim, c.model.universal_student_dim = (12,), (6,)
    model = embedding_model.build_model(settings.model_spec(c), CLASSES)
    params = jax.device_get(embedding_model.init_params(model, jax.random.PRNGKey(0), 16))
    rng = np.random.default_rng(0)
    images = rng.normal(size=(B, 16, 16, 3)).astype(np.float32)
    labels = rng.integers(0, 3, size=B).astype(np.int32)
    return c, model, params, images, labels


def grads_of(setup, domain: int, **loss_fields):
    c, model, params, images, labels = setup
    c = c.copy_and_resolve_references()  # the module's config stays as built
    for key, value in loss_fields.items():
        c.loss[key] = value
    cfg = train_settings.udon_loss(c.loss)
    loss_fn = udon_steps.make_loss_fn(model, cfg)
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, images, labels, domain
    )
    return loss, metrics, jax.device_get(grads)


def nonzero(tree) -> bool:
    return any(np.any(np.asarray(x) != 0) for x in jax.tree.leaves(tree))


DISTILL_ONLY = {"classif_udon_teacher_weight": 0.0, "classif_udon_universal_student_weight": 0.0}


@pytest.mark.parametrize("to_backbone", [True, False])
def test_distillation_gradients_reach_the_backbone_only_when_switched_on(setup, to_backbone):
    _, _, grads = grads_of(setup, 1, distill_grads_to_backbone=to_backbone, **DISTILL_ONLY)
    assert nonzero(grads["backbone"]) == to_backbone
    proj, heads = grads["projections"], grads["heads"]
    assert nonzero(proj[udon.STUDENT_NAME]) and nonzero(heads[udon.student_head_name(1)])
    # teachers are trained by the teacher CE only (weight 0 here)
    assert not nonzero(proj[udon.teacher_name(1)]) and not nonzero(heads[udon.teacher_head_name(1)])


def test_other_domains_get_zero_gradients_and_the_loss_is_the_weighted_mean(setup):
    c, model, params, images, labels = setup
    loss, metrics, grads = grads_of(setup, 1, distill_grads_to_backbone=True)
    for name in (udon.teacher_name(0),):
        assert not nonzero(grads["projections"][name])
    for name in (udon.teacher_head_name(0), udon.student_head_name(0)):
        assert not nonzero(grads["heads"][name])
    assert nonzero(grads["projections"][udon.teacher_name(1)]) and nonzero(grads["backbone"])
    # the same terms from the model's outputs and the loss functions directly
    out = model.apply({"params": params}, images, domain=1)
    cos_t = udon.head_cosines(params, udon.teacher_head_name(1), 3, out["teacher_embedd"])
    cos_s = udon.head_cosines(params, udon.student_head_name(1), 3, out["universal_student_embedd"])
    cfg = train_settings.udon_loss(c.loss)
    terms = udon_losses.loss_terms(
        cos_t, cos_s, cos_s, out["teacher_embedd"], out["universal_student_embedd"], labels, cfg
    )
    for key in udon_losses.TERMS:
        np.testing.assert_allclose(float(metrics[key]), float(terms[key]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        float(loss), float(sum(terms[k] for k in udon_losses.TERMS) / 4), rtol=1e-5
    )


def test_uint8_batches_are_normalised_inside_the_udon_step(setup):
    """The UDON step on uint8 pixels + pixel_stats == on the host's normalised floats."""
    from universal_embedding.data import normalization
    from universal_embedding.distributed import mesh as mesh_lib
    from universal_embedding.train import optimizers, steps

    c, model, params, _, labels = setup
    mesh = mesh_lib.make_mesh()
    tx = optimizers.make_optimizer(
        train_settings.optimizer_settings(c), steps_per_epoch=2, total_steps=10
    )
    cfg = train_settings.udon_loss(c.loss)
    stats = normalization.mean_std("imagenet")
    pixels = np.random.default_rng(4).integers(0, 256, (B, 16, 16, 3), dtype=np.uint8)
    mean, std = (np.array(v, np.float32) for v in stats)
    floats = ((pixels.astype(np.float32) / 255 - mean) / std).astype(np.float32)
    float_steps = udon_steps.make_udon_train_steps(model, tx, mesh, cfg)
    uint8_steps = udon_steps.make_udon_train_steps(model, tx, mesh, cfg, pixel_stats=stats)
    state_f = steps.create_train_state(params, tx, mesh)
    state_u = steps.create_train_state(params, tx, mesh)
    for _ in range(2):
        batch_f = mesh_lib.shard_batch({"images": floats, "labels": labels}, mesh)
        batch_u = mesh_lib.shard_batch({"images": pixels, "labels": labels}, mesh)
        state_f, m_f = float_steps["sop"](state_f, batch_f)
        state_u, m_u = uint8_steps["sop"](state_u, batch_u)
        for key in ("loss", "grad_norm"):  # (Adam turns float-rounding gradient noise near
            # zero into full-size updates, so parameters are not compared)
            np.testing.assert_allclose(float(m_u[key]), float(m_f[key]), rtol=1e-4)
