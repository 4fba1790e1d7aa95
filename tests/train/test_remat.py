"""config.model.remat (gradient checkpointing per transformer block): the parameter tree is
unchanged, the blocks are really checkpointed, and one train step's gradients equal the plain
step's within 1e-6 for every backbone family (AugReg ViT, CLIP, and UDON on the ViT)."""

from __future__ import annotations

import re

import jax
import numpy as np
import optax
import pytest

from universal_embedding import settings, train_settings
from universal_embedding.configs import base, config_train_udon, tiny
from universal_embedding.distributed import mesh as mesh_lib
from universal_embedding.models import embedding_model as em
from universal_embedding.pretrained.common import flatten
from universal_embedding.train import steps, udon_steps

IMAGE, B = 16, 8
HEADS = {"cars": 5, "sop": 3}
FAMILIES = (
    "vit_with_embedding",
    "clip_vit_with_embedding",
    "udon_vit_with_embedding",  # UDON builds the same backbones with the same field
)


def _config(model_class: str, remat: bool):
    c = base.get_config()
    if model_class.startswith("udon_"):
        c = config_train_udon.add_udon_fields(c)
        c.model.teacher_dim, c.model.universal_student_dim = (12,), (6,)
    c = tiny.tiny_vit(c, image_size=IMAGE, patch_size=8)
    c.model.num_layers = 2  # two checkpointed blocks, one feeding the other
    c.model_class, c.dataset_name, c.model.remat = model_class, "cars,sop", remat
    return c


def _batch():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(B, IMAGE, IMAGE, 3)).astype(np.float32)
    return {"images": images, "labels": rng.integers(0, 3, size=B).astype(np.int32)}


def _step_grads(config, params):
    """Gradients of one compiled train step: SGD with learning rate 1 moves params by -grad."""
    model = em.build_model(settings.model_spec(config), HEADS)
    mesh, tx = mesh_lib.make_mesh(), optax.sgd(1.0)
    state = steps.create_train_state(params, tx, mesh)
    batch = mesh_lib.shard_batch(_batch(), mesh)
    if model.__class__.__name__ == "UdonModel":
        cfg = train_settings.udon_loss(config.loss)
        state, metrics = udon_steps.make_udon_train_steps(model, tx, mesh, cfg)["sop"](state, batch)
    else:
        step = steps.make_train_step(
            model, tx, mesh, loss=train_settings.loss_settings(config.loss)
        )
        state, metrics = step(state, batch, steps.head_index(model, "sop", mesh))
    after = flatten(jax.device_get(state.params))
    grads = {k: np.asarray(v) - after[k] for k, v in flatten(params).items()}
    return grads, float(metrics["loss"])


def _uses_checkpoint(config, params) -> bool:
    """Whether the backward pass of the model holds checkpointed (rematerialised) blocks."""
    model = em.build_model(settings.model_spec(config), HEADS)
    x = _batch()["images"]

    def f(p):
        return model.apply({"params": p}, x)["backbone_out"].sum()

    jaxpr = str(jax.make_jaxpr(jax.grad(f))(params))
    return re.search(r"= (remat2?|checkpoint)\[", jaxpr) is not None  # the name by JAX version


@pytest.mark.parametrize("model_class", FAMILIES)
def test_remat_keeps_params_and_gradients(model_class):
    plain, remat = _config(model_class, False), _config(model_class, True)
    assert settings.model_spec(remat).remat and not settings.model_spec(plain).remat
    model = em.build_model(settings.model_spec(plain), HEADS)
    params = jax.device_get(em.init_params(model, jax.random.key(0), IMAGE))
    remat_model = em.build_model(settings.model_spec(remat), HEADS)
    assert remat_model.backbone.remat is True
    shapes = jax.eval_shape(lambda k: em.init_params(remat_model, k, IMAGE), jax.random.key(0))
    flat = flatten(params)
    # The same names and shapes: checkpoints written with or without remat load either way.
    assert {k: v.shape for k, v in flatten(shapes).items()} == {k: v.shape for k, v in flat.items()}

    assert _uses_checkpoint(remat, params) and not _uses_checkpoint(plain, params)
    want, want_loss = _step_grads(plain, params)
    got, got_loss = _step_grads(remat, params)
    assert got_loss == pytest.approx(want_loss, abs=1e-6)
    assert any(np.abs(g).max() > 1e-4 for k, g in want.items() if k.startswith("backbone/"))
    for name, g in want.items():
        np.testing.assert_allclose(got[name], g, rtol=0, atol=1e-6, err_msg=name)
