"""One train program for all separate heads against the one-program-per-head step it replaced.

The reference below is the previous step: the model run with head=<name> (that head's
cosines only), the loss over them, value_and_grad and the optimiser over the whole tree.
"""

import jax
import numpy as np
import optax
import pytest

from universal_embedding import settings, train_settings
from universal_embedding.configs import base
from universal_embedding.distributed import mesh as mesh_lib
from universal_embedding.models import embedding_model
from universal_embedding.train import losses, optimizers, steps

IMAGE = 16
HEADS = {"cars": 3, "sop": 5, "met": 4}  # three heads: the trained columns also sit inside
TOL = 1e-6  # relative to each leaf's largest entry: float32 sums taken in another order


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
def model_and_params():
    model = embedding_model.build_model(settings.model_spec(_config()), HEADS)
    return model, jax.device_get(embedding_model.init_params(model, jax.random.key(0), IMAGE))


def per_head_loss_fn(model, loss_settings, name):
    """The previous loss: cosines of head `name` alone, softmax over its classes."""

    def loss_fn(params, images, labels):
        cosines = model.apply({"params": params}, images, train=True, head=name)["logits"]
        loss = losses.loss_from_settings(cosines, labels, loss_settings)
        return loss, losses.precision_at_1(cosines, labels)

    return loss_fn


def per_head_step(model, tx, loss_settings, name):
    """The previous train step of head `name` (one compiled program per head)."""
    loss_fn = per_head_loss_fn(model, loss_settings, name)

    def step(state, batch):
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, _), grads = grad_fn(state.params, batch["images"], batch["labels"])
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return steps.TrainState(state.step + 1, params, opt_state), loss

    return jax.jit(step)


def _batch(name, seed, n=8):
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(n, IMAGE, IMAGE, 3)).astype(np.float32)
    return {"images": images, "labels": rng.integers(0, HEADS[name], n).astype(np.int32)}


def _assert_close_trees(a, b):
    """Same structure; every leaf within TOL * max(1, its largest |entry|) of the other."""
    paths_a, tree_a = jax.tree_util.tree_flatten_with_path(a)
    paths_b, tree_b = jax.tree_util.tree_flatten_with_path(b)
    assert tree_a == tree_b
    for (path, x), (_, y) in zip(paths_a, paths_b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        scale = max(1.0, float(np.max(np.abs(y), initial=0.0)))
        diff = float(np.max(np.abs(x - y), initial=0.0))
        assert diff <= TOL * scale, (jax.tree_util.keystr(path), diff, scale)


@pytest.mark.parametrize(
    "loss_type, margin, smoothing, names",
    [
        ("normface", 0.0, 0.0, ("cars", "sop", "met")),  # first, middle and last columns
        ("cosface", 0.2, 0.1, ("sop",)),
        ("arcface", 0.3, 0.0, ("met",)),
    ],
)
def test_loss_and_gradients_equal_the_per_head_step(
    model_and_params, loss_type, margin, smoothing, names
):
    model, params = model_and_params
    config = _config()
    config.loss.type, config.loss.margin, config.loss.label_smoothing = loss_type, margin, smoothing
    loss = train_settings.loss_settings(config.loss)
    one_program = jax.jit(jax.value_and_grad(steps.make_loss_fn(model, loss), has_aux=True))
    for name in names:
        i = list(HEADS).index(name)
        batch = _batch(name, seed=i)
        old = jax.value_and_grad(per_head_loss_fn(model, loss, name), has_aux=True)
        (loss_old, prec_old), grads_old = jax.jit(old)(params, batch["images"], batch["labels"])
        (loss_new, prec_new), grads_new = one_program(
            params, batch["images"], batch["labels"], np.int32(i)
        )
        np.testing.assert_allclose(float(loss_new), float(loss_old), rtol=TOL)
        assert float(prec_new) == float(prec_old)
        _assert_close_trees(grads_new, grads_old)
        assert np.any(np.asarray(grads_new["heads"][name]["kernel"]) != 0)
        for other in HEADS:
            if other != name:  # exactly zero, in both
                np.testing.assert_array_equal(grads_new["heads"][other]["kernel"], 0.0)
                np.testing.assert_array_equal(grads_old["heads"][other]["kernel"], 0.0)
    assert one_program._cache_size() == 1  # one compilation served every head


def test_steps_over_several_domains_match_the_per_head_steps(model_and_params):
    """Weight decay, Adam moments and gradient clipping as before: the untrained heads get
    zero gradients in both, so adamw moves them identically. The backbone stays frozen (its
    moments still accumulate): Adam divides a gradient by its own size, so parameters whose
    true gradient is 0 (the attention key biases) would turn float32 rounding into lr-sized
    steps, in the old step as much as in the new."""
    model, params = model_and_params
    config = _config(weight_decay=0.1, grad_clip_norm=1.0, frozen_epochs=4.0)  # 8 steps frozen
    opt, loss = train_settings.optimizer_settings(config), train_settings.loss_settings(config.loss)
    tx = optimizers.make_optimizer(opt, steps_per_epoch=2, total_steps=40)
    mesh = mesh_lib.make_mesh()
    new_step = steps.make_train_step(model, tx, mesh, loss=loss)
    old_steps = {name: per_head_step(model, tx, loss, name) for name in HEADS}
    index = {name: steps.head_index(model, name, mesh) for name in HEADS}
    new = steps.create_train_state(params, tx, mesh)
    old = steps.create_train_state(params, tx, mesh)
    schedule = ["sop", "sop", "cars", "met", "sop", "cars", "cars", "met"]
    history = []
    for t, name in enumerate(schedule):
        batch = mesh_lib.shard_batch(_batch(name, seed=10 + t), mesh)
        new, metrics = new_step(new, batch, index[name])
        old, loss_old = old_steps[name](old, batch)
        np.testing.assert_allclose(float(metrics["loss"]), float(loss_old), rtol=TOL)
        history.append(jax.device_get(new.params["heads"]))
        _assert_close_trees(new.params, old.params)
        _assert_close_trees(new.opt_state, old.opt_state)
    assert new_step._cache_size() == 1
    # 'cars' was not trained in steps 0-1, yet decoupled weight decay shrank it (as before).
    start = np.asarray(params["heads"]["cars"]["kernel"])
    after = history[1]["cars"]["kernel"]
    np.testing.assert_allclose(after, start * (1 - 3e-2 * 0.1) ** 2, rtol=1e-5)
    # after its own step (2), later steps of other heads move it by its Adam momentum too
    assert not np.allclose(history[3]["cars"]["kernel"], history[2]["cars"]["kernel"] * 0.997)


def test_head_index_names_the_heads(model_and_params):
    model, _ = model_and_params
    mesh = mesh_lib.make_mesh()
    assert [int(steps.head_index(model, n, mesh)) for n in HEADS] == [0, 1, 2]
    with pytest.raises(ValueError, match="Unknown head 'inat'"):
        steps.head_index(model, "inat", mesh)
