"""Sharded jit train/embed steps on a 2-device CPU mesh with a tiny real embedding model."""

import jax
import numpy as np
import pytest

from universal_embedding import settings, train_settings
from universal_embedding.configs import base
from universal_embedding.distributed import mesh as mesh_lib
from universal_embedding.loading import embedder
from universal_embedding.models import embedding_model
from universal_embedding.train import optimizers, steps

IMAGE = 16
HEADS = {"cars": 3, "sop": 5}


def _config(**overrides):
    c = base.get_config()
    c.model_type = "Ti/16"
    c.model.hidden_size, c.model.num_heads, c.model.mlp_dim = 16, 2, 32
    c.model.num_layers, c.model.patch_size, c.model.output_dim = 1, 8, 8
    c.lr, c.backbone_lr_multiplier, c.frozen_epochs = 3e-2, 0.1, 1.0  # 2 frozen steps
    for k, v in overrides.items():
        setattr(c, k, v)
    return c


@pytest.fixture(scope="module")
def setup():
    """Model, host params, mesh, optimiser and the compiled 'sop' train step (built once)."""
    config = _config()
    model = embedding_model.build_model(settings.model_spec(config), HEADS)
    params = jax.device_get(embedding_model.init_params(model, jax.random.key(0), IMAGE))
    mesh = mesh_lib.make_mesh()
    tx = optimizers.make_optimizer(
        train_settings.optimizer_settings(config), steps_per_epoch=2, total_steps=40
    )
    step = steps.make_train_step(model, tx, mesh, loss=train_settings.loss_settings(config.loss))
    return config, model, params, mesh, tx, step


def _batch(num_classes, n=8, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, IMAGE, IMAGE, 3)).astype(np.float32)
    return {"images": images, "labels": (np.arange(n) % num_classes).astype(np.int32)}


def _bits(tree):
    return [np.asarray(x).view(np.uint32).copy() for x in jax.tree.leaves(tree)]


def test_mesh_covers_all_devices_and_batch_is_sharded():
    mesh = mesh_lib.make_mesh()
    assert mesh.axis_names == ("data",) and mesh.size == jax.device_count() == 2
    sharded = mesh_lib.shard_batch(_batch(3), mesh)
    assert sharded["images"].shape == (8, IMAGE, IMAGE, 3)
    assert len(sharded["images"].addressable_shards) == 2
    assert sharded["images"].addressable_shards[0].data.shape[0] == 4
    with pytest.raises(ValueError, match="divisible"):
        mesh_lib.shard_batch(_batch(3, n=5), mesh)


def test_frozen_steps_then_loss_falls_on_a_fixed_batch(setup):
    _, model, params, mesh, tx, step = setup
    state = steps.create_train_state(params, tx, mesh)
    batch = mesh_lib.shard_batch(_batch(5), mesh)
    sop = steps.head_index(model, "sop", mesh)
    losses = []
    for _ in range(2):  # frozen: backbone + projection bit-identical, the 'sop' head moves
        state, metrics = step(state, batch, sop)
        losses.append(float(metrics["loss"]))
    after = jax.device_get(state.params)
    for part in ("backbone", "projection"):
        for a, b in zip(_bits(params[part]), _bits(after[part]), strict=True):
            np.testing.assert_array_equal(a, b)
    assert not np.allclose(params["heads"]["sop"]["kernel"], after["heads"]["sop"]["kernel"])
    np.testing.assert_array_equal(
        params["heads"]["cars"]["kernel"], after["heads"]["cars"]["kernel"]
    )
    for _ in range(13):  # unfrozen from step 3 on
        state, metrics = step(state, batch, sop)
        losses.append(float(metrics["loss"]))
    moved = jax.device_get(state.params)
    assert not np.array_equal(after["backbone"]["cls"], moved["backbone"]["cls"])
    assert not np.array_equal(after["projection"]["kernel"], moved["projection"]["kernel"])
    assert set(metrics) == {"loss", "precision_at_1", "grad_norm"}
    assert losses[-1] < 0.5 * losses[0]
    assert float(metrics["precision_at_1"]) == 1.0 and float(metrics["grad_norm"]) > 0
    assert int(state.step) == 15
    assert jax.tree.leaves(state.params)[0].sharding.is_fully_replicated


def test_skipping_backbone_backward_matches_frozen_steps(setup):
    config, model, params, mesh, tx, full = setup
    heads_only = steps.make_train_step(
        model, tx, mesh, loss=train_settings.loss_settings(config.loss), train_backbone=False
    )
    sop = steps.head_index(model, "sop", mesh)
    state_a = steps.create_train_state(params, tx, mesh)
    state_b = steps.create_train_state(params, tx, mesh)
    batch = mesh_lib.shard_batch(_batch(5, seed=1), mesh)
    for _ in range(2):  # the frozen steps: same params whether or not backbone grads exist
        state_a, m_a = full(state_a, batch, sop)
        state_b, m_b = heads_only(state_b, batch, sop)
    np.testing.assert_allclose(float(m_a["loss"]), float(m_b["loss"]), rtol=1e-6)
    a, b = jax.device_get(state_a.params), jax.device_get(state_b.params)
    for x, y in zip(_bits(a["backbone"]), _bits(b["backbone"]), strict=True):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_allclose(a["heads"]["sop"]["kernel"], b["heads"]["sop"]["kernel"], atol=1e-6)
    assert float(m_b["grad_norm"]) < float(m_a["grad_norm"])  # backbone grads left out


def test_embed_fn_is_normalised_and_host_wrapper_gathers(setup):
    _, model, params, mesh, _, _ = setup
    images = _batch(3)["images"]
    embed = embedder.make_embed_fn(model, "projected")
    rep = jax.device_put(params, mesh_lib.replicated(mesh))
    got = embed(rep, mesh_lib.shard_batch({"images": images}, mesh)["images"])
    assert got.shape == (8, 8) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(np.asarray(got), axis=1), 1.0, atol=1e-5)
    out = mesh_lib.host_embed_fn(embed, rep, mesh)(images)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, np.asarray(got))
    # row i depends on image i only: embedding the second half alone gives the same rows
    half = mesh_lib.host_embed_fn(embed, rep, mesh)(images[4:])
    np.testing.assert_allclose(half, out[4:], atol=1e-6)
    with pytest.raises(ValueError, match="projected"):
        embedder.make_embed_fn(model, "logits")


def test_training_core_imports_without_tensorflow():
    import subprocess
    import sys

    mods = ", ".join(
        [f"universal_embedding.train.{m}" for m in ("losses", "optimizers", "samplers", "steps")]
        + [f"universal_embedding.{m}" for m in ("checkpoint", "loading", "knn.evaluator")]
    )
    code = f"import sys, {mods}; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_uint8_batches_are_normalised_inside_the_step(setup):
    """uint8 pixels + pixel_stats == the host's normalised float batch, step for step."""
    from universal_embedding.data import normalization

    config, model, params, mesh, tx, float_step = setup
    stats = normalization.mean_std("clip")
    uint8_step = steps.make_train_step(
        model, tx, mesh, loss=train_settings.loss_settings(config.loss), pixel_stats=stats
    )
    pixels = np.random.default_rng(3).integers(0, 256, (8, IMAGE, IMAGE, 3), dtype=np.uint8)
    mean, std = (np.array(v, np.float32) for v in stats)
    floats = ((pixels.astype(np.float32) / 255 - mean) / std).astype(np.float32)
    labels = (np.arange(8) % 5).astype(np.int32)
    sop = steps.head_index(model, "sop", mesh)
    state_f = steps.create_train_state(params, tx, mesh)
    state_u = steps.create_train_state(params, tx, mesh)
    for _ in range(3):
        state_f, m_f = float_step(state_f, mesh_lib.shard_batch(
            {"images": floats, "labels": labels}, mesh), sop)  # fmt: skip
        state_u, m_u = uint8_step(state_u, mesh_lib.shard_batch(
            {"images": pixels, "labels": labels}, mesh), sop)  # fmt: skip
        for key in ("loss", "grad_norm"):  # (Adam turns float-rounding gradient noise near
            # zero into full-size updates, so parameters are not compared)
            np.testing.assert_allclose(float(m_u[key]), float(m_f[key]), rtol=1e-4)
    with pytest.raises(ValueError, match="pixel_stats"):
        state = steps.create_train_state(params, tx, mesh)
        float_step(state, mesh_lib.shard_batch({"images": pixels, "labels": labels}, mesh), sop)
